"""Office 365 Management Activity API wire facts: URLs, time formats, listings, blobs and AF error codes.

Everything here is a pure function of a request or a response, so each documented rule (and each
quirk observed by other collectors) is testable without a server. The client (`client.py`) and
the window run (`run.py`) decide what to do with the exceptions raised here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from agent.archive.codec import Record, format_time, parse_time
from agent.errors import ApiError, ThrottledError, TokenRejected, TransientApiError
from agent.http import Response, parse_retry_after, redact_url
from agent.sources.base import error_of, parse_json

API_TIME = "%Y-%m-%dT%H:%M:%S"  # one of the three documented formats; no zone (the API means UTC)
RETENTION = timedelta(days=7)  # a blob is retrievable for 7 days after contentCreated
PUBLISHER_PARAM = "PublisherIdentifier"
NEXT_PAGE_HEADERS = frozenset({"nextpageuri", "nextpageurl"})  # older docs spell it NextPageUrl


def feed_root(base: str, tenant_id: str) -> str:
    """`{root}` of every operation: `https://manage.office.com/api/v1.0/{tenant}/activity/feed`."""
    return f"{base.rstrip('/')}/api/v1.0/{tenant_id}/activity/feed"


def api_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime(API_TIME)


def url_with(base: str, params: dict[str, str]) -> str:
    return f"{base}?{urlencode(params)}"


def with_publisher(url: str, publisher: str) -> str:
    """The URL with `PublisherIdentifier` added unless it already carries one (in any case).

    Without it every call of every tenant counts against one shared quota, so it goes on every
    request, blob downloads and followed NextPageUri links included (the links may omit it).
    """
    parts = urlsplit(url)
    names = (p.split("=", 1)[0].lower() for p in parts.query.split("&") if p)
    if PUBLISHER_PARAM.lower() in names:
        return url
    extra = f"{PUBLISHER_PARAM}={quote(publisher)}"
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def same_origin(url: str, base: str) -> bool:
    """True if `url` points at the configured API host: our bearer token must never go elsewhere."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup on a plain mapping (HTTP header names are case-insensitive)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def next_page(resp: Response) -> str | None:
    for key, value in resp.headers.items():
        if key.lower() in NEXT_PAGE_HEADERS and value.strip():
            return value.strip()
    return None


def server_date(resp: Response) -> datetime | None:
    value = header(resp.headers, "Date")
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Content:
    """One entry of a content listing: a blob of audit records that became available at `created`."""

    content_id: str
    uri: str
    created: datetime
    expiration: datetime

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return self.created, self.content_id

    def describe(self) -> dict[str, str]:
        return {"content_id": self.content_id, "content_created": format_time(self.created),
                "content_expiration": format_time(self.expiration)}


def _content(item: Any) -> Content:
    if not isinstance(item, dict):
        raise ValueError("entry is not an object")
    cid, uri, created = item.get("contentId"), item.get("contentUri"), item.get("contentCreated")
    if not (isinstance(cid, str) and cid and isinstance(uri, str) and uri.startswith("https://")):
        raise ValueError("entry lacks contentId or an https contentUri")
    when = parse_time(created)  # ms + Z, e.g. 2015-05-23T17:35:00.000Z
    raw_exp = item.get("contentExpiration")
    # Documented as created + 7 days; fall back to that rule when the field is absent.
    try:
        expiration = parse_time(raw_exp) if raw_exp else when + RETENTION
    except OverflowError:  # contentCreated within 7 days of datetime.max
        raise ValueError(f"contentCreated out of range: {created!r}") from None
    return Content(cid, uri, when, expiration)


def parse_listing(body: Any, where: str) -> list[Content]:
    """Entries of one listing page; a page that is not an array of well-formed entries is transient."""
    if not isinstance(body, list):
        raise TransientApiError(f"{where} returned a content listing that is not a JSON array")
    try:
        return [_content(item) for item in body]
    except ValueError as exc:
        raise TransientApiError(f"{where} returned a malformed content listing entry ({exc})") from None


def sort_listing(contents: list[Content]) -> list[Content]:
    """contentCreated, then contentId (as Filebeat does): a stable order across re-listings."""
    return sorted(contents, key=lambda c: c.sort_key)


def parse_blob(doc: Any, where: str) -> list[Record]:
    """A blob must be a JSON array (`classify` already turned a truncated body into a retry).

    An entry that is not a JSON object is passed on: the archive keeps it aside and the pass names
    it as a gap, where rejecting the blob would fetch the same entry again on every pass.
    """
    if not isinstance(doc, list):
        raise TransientApiError(f"{where} returned a blob that is not a JSON array")
    return doc


# Response parsers for the source's calls: they run inside the retry loop, so a malformed body is retried.

def subscription_states(resp: Response, doc: Any) -> dict[str, str]:
    """contentType -> status ("enabled" / "disabled") from `subscriptions/list`."""
    if not isinstance(doc, list):
        raise TransientApiError(f"{redact_url(resp.url)} returned a subscription list that is not a JSON array")
    return {str(s.get("contentType")): str(s.get("status", "")).lower() for s in doc if isinstance(s, dict)}


def listing_page(resp: Response, doc: Any) -> tuple[Response, list[Content]]:
    return resp, parse_listing(doc, redact_url(resp.url))


def blob_records(resp: Response, doc: Any) -> list[Record]:
    return parse_blob(doc, redact_url(resp.url))


def ignore_body(resp: Response, doc: Any) -> None:
    return None


# ------------------------------------------------------------------------------------------ errors

class SubscriptionMissing(ApiError):
    """AF20022: no subscription for the content type; start it, then retry."""


class SubscriptionAlreadyEnabled(ApiError):
    """AF20024 on subscriptions/start: the subscription is already on (success for us)."""


class SubscriptionDisabled(ApiError):
    """AF20023: a tenant or service administrator disabled the subscription; only they can fix it."""


class WindowRejected(ApiError):
    """AF20030 / AF20055: the start/end pair was refused (7-day edge, clock skew, >24 h)."""

    def __init__(self, message: str, *, status: int, code: str, server_time: datetime | None) -> None:
        super().__init__(message, status=status, code=code)
        self.server_time = server_time


class InvalidNextPage(ApiError):
    """AF20031: the nextPage token was refused; the listing restarts from its first page."""


class ContentExpired(ApiError):
    """AF20051: the blob is older than 7 days and can no longer be fetched."""


class ContentMissing(TransientApiError):
    """AF20050 / 404: the listed blob is not there (yet); retried, and a gap once it has expired."""


class BlobUnavailable(TransientApiError):
    """A blob that has not expired could not be fetched: its window fails so the cursor waits for it."""


class Action(Enum):
    FATAL = "fatal"
    RETRY = "retry"
    THROTTLE = "throttle"
    NEW_TOKEN = "new_token"  # noqa: S105 - an action name, not a credential
    SUBSCRIBE = "subscribe"
    DISABLED = "disabled"
    ENABLED = "enabled"
    RETIME = "retime"
    RESTART_LISTING = "restart_listing"
    MISSING = "missing"
    EXPIRED = "expired"


# The documented codes (office-365-management-activity-api-reference.md, "Errors") plus those other
# collectors met in production. Anything unknown falls back to the HTTP status (`STATUS_ACTIONS`).
AF_ACTIONS: dict[str, Action] = {
    "AF10001": Action.FATAL,  # the permission set lacks ActivityFeed.Read
    "AF20001": Action.FATAL,  # missing parameter
    "AF20002": Action.FATAL,  # invalid parameter type
    "AF20003": Action.FATAL,  # webhook expiration in the past
    "AF20010": Action.FATAL,  # URL tenant differs from the token's tenant
    "AF20011": Action.FATAL,  # tenant does not exist or was deleted
    "AF20012": Action.FATAL,  # tenant incorrectly configured
    "AF20013": Action.FATAL,  # URL tenant is not a GUID
    "AF20020": Action.FATAL,  # invalid content type
    "AF20021": Action.FATAL,  # webhook could not be validated
    "AF20022": Action.SUBSCRIBE,  # no subscription for the content type
    "AF20023": Action.DISABLED,  # subscription disabled by a tenant or service admin
    "AF20024": Action.ENABLED,  # undocumented, HTTP 400 on start: already enabled
    "AF20030": Action.RETIME,  # start/end missing one, > 24 h apart, or start > 7 days ago
    "AF20031": Action.RESTART_LISTING,  # invalid nextPage value
    "AF20050": Action.MISSING,  # content does not exist
    "AF20051": Action.EXPIRED,  # content expired (older than 7 days)
    "AF20052": Action.FATAL,  # content id in the URL is invalid
    "AF20053": Action.FATAL,  # more than one Accept-Language
    "AF20054": Action.FATAL,  # Accept-Language syntax
    "AF20055": Action.RETIME,  # as AF20030, plus start must precede end
    "AF429": Action.THROTTLE,  # too many requests; Microsoft's example answers it with HTTP 403
    "AF50000": Action.RETRY,  # internal error
    "AF50005": Action.RETRY,  # undocumented internal error (seen by Filebeat)
    "AF50006": Action.RETRY,  # undocumented internal error (seen by Filebeat)
}

STATUS_ACTIONS: dict[int, Action] = {
    401: Action.NEW_TOKEN, 404: Action.MISSING, 408: Action.RETRY, 429: Action.THROTTLE,
}


def action_for(status: int, code: str) -> Action:
    if status == 401:
        return Action.NEW_TOKEN  # whatever the code says, a fresh token is the first thing to try
    if code in AF_ACTIONS:
        return AF_ACTIONS[code]
    if status in STATUS_ACTIONS:
        return STATUS_ACTIONS[status]
    return Action.RETRY if status >= 500 else Action.FATAL


def classify(resp: Response, what: str, *, throttle_wait: float | None) -> Any:
    """The parsed JSON of a successful response, or the AgentError that says what to do next."""
    where = f"{what}: {redact_url(resp.url)}"
    if 200 <= resp.status < 300:
        if not resp.body.strip():
            return None
        return parse_json(resp.body, where)
    code, message = error_of(resp.body)
    action = action_for(resp.status, code)
    text = f"{where} failed with {resp.status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    short = f"{resp.status} {code}".strip()
    match action:
        case Action.THROTTLE:
            wait = parse_retry_after(header(resp.headers, "Retry-After"))  # AF429 documents none
            raise ThrottledError(f"{where} throttled ({short})",
                                 retry_after=wait if wait is not None else throttle_wait)
        case Action.NEW_TOKEN:
            raise TokenRejected(f"{where} rejected the access token ({short})")
        case Action.RETRY:
            raise TransientApiError(text, retry_after=parse_retry_after(header(resp.headers, "Retry-After")))
        case Action.MISSING:
            raise ContentMissing(text)
        case Action.RETIME:
            raise WindowRejected(text, status=resp.status, code=code, server_time=server_date(resp))
        case _:
            raise _FATAL_TYPES[action](text + _HINTS.get(code, ""), status=resp.status, code=code)


_FATAL_TYPES: dict[Action, type[ApiError]] = {
    Action.FATAL: ApiError,
    Action.SUBSCRIBE: SubscriptionMissing,
    Action.DISABLED: SubscriptionDisabled,
    Action.ENABLED: SubscriptionAlreadyEnabled,
    Action.RESTART_LISTING: InvalidNextPage,
    Action.EXPIRED: ContentExpired,
}

_HINTS: dict[str, str] = {
    "AF10001": " (grant the app the ActivityFeed.Read application permission with admin consent)",
    "AF20010": " (the tenant id in the config does not match the app's token)",
    "AF20023": (" (a tenant or service administrator disabled this subscription; the agent does not override "
                "that: re-enable it in the tenant, then collection resumes)"),
}
