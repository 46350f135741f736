"""The content listing's rules, as pure functions of the request: the `startTime`/`endTime` window
(the 24 h and 7-day rules; `contentCreated` inclusive start, exclusive end), the nextPage tokens
the service emits and accepts (documented and observed forms), and the NextPageUri it answers.
Query parameter names are matched case-insensitively.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from aiohttp import web

from emulator.microsoft.blobs import Blob
from emulator.microsoft.management_errors import AfError
from emulator.world.clock import TICKS_PER_SECOND, now_ticks, rfc3339

DAY = 86400 * TICKS_PER_SECOND
# startTime/endTime: the reference documents YYYY-MM-DD, YYYY-MM-DDTHH:MM and YYYY-MM-DDTHH:MM:SS (UTC);
# the service is ASP.NET and binds them as a .NET DateTime, so what real clients send works too:
# fractions of any length (JavaScript 3 digits, Python 6, .NET 7, Go up to 9), a `Z` or a numeric
# offset (Python `isoformat()`: `+00:00`; also `+0000`, `+00`), a space instead of `T` (Python
# `str(datetime)`). An unencoded `+` in the query arrives as a space (form decoding) and is still
# read as the offset sign: connectors that send `...+00:00` unencoded collect with the real service.
# Anything else (no date, out-of-range fields, epoch numbers) is AF20002.
_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"\s*(?:([Zz])|([+ -])(\d{2})(?::?(\d{2}))?)?$"
)
_WINDOW_TEXT = (
    "must both be specified (or both omitted) and must be less than or equal to 24 hours apart, "
    "with the start time no more than 7 days in the past."
)
_PAGE_RE = re.compile(r"^(\d{17})R(\d{12})$")
# The form seen in the wild (counteractive/o365beat#39): `<digits>$<the window start as digits>$na0022`.
_OBSERVED_PAGE_RE = re.compile(r"^(\d{17})(\d{6,})\$\d{23}\$[a-z]{2}\d{4}$")


def parse_window_time(name: str, value: str) -> int:
    """A listing's startTime/endTime in ticks (UTC), in any form `_TIME_RE` accepts; else AF20002."""
    m = _TIME_RE.match(value.strip())
    try:
        if m is None:
            raise ValueError(value)
        y, mo, d, h, mi, s, frac, _, sign, oh, om = m.groups()
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC)
        if sign is not None:
            offset = timedelta(hours=int(oh), minutes=int(om or 0))
            if offset > timedelta(hours=14):
                raise ValueError(value)
            dt -= offset if sign in "+ " else -offset
    except ValueError:
        raise AfError(400, "AF20002", f"Invalid parameter type: {name}. Expected type: datetime") from None
    return int(dt.timestamp()) * TICKS_PER_SECOND + int((frac or "0").ljust(7, "0")[:7])


def page_token(blob: Blob) -> str:
    """The documented-form nextPage token after `blob`: its creation time (ms) and sequence."""
    return f"{blob.created // 10_000:017d}R{blob.seq:012d}"


def param(request: web.Request, name: str) -> str | None:
    """A query parameter by case-insensitive name (the service matches names that way)."""
    for key, value in request.query.items():
        if key.lower() == name.lower():
            return value
    return None


def window(request: web.Request, now: int) -> tuple[int, int]:
    """A listing's [start, end) in ticks: both or neither (then the last 24 h), at most 24 h apart,
    start no more than 7 days back; else AF20030 / AF20055."""
    start, end = param(request, "startTime"), param(request, "endTime")
    if (start is None) != (end is None):
        raise AfError(400, "AF20030", f"Start time and end time {_WINDOW_TEXT}")
    if start is None or end is None:
        return now - DAY, now
    lo, hi = (parse_window_time(name, value) for name, value in (("startTime", start), ("endTime", end)))
    if lo >= hi:
        raise AfError(
            400,
            "AF20055",
            "Start time and end time must both be specified (or both omitted) and "
            "must be less than or equal to 24 hours apart, with the start time prior "
            "to end time and start time no more than 7 days in the past.",
        )
    if hi - lo > DAY or lo < now - 7 * DAY:
        raise AfError(400, "AF20030", f"Start time and end time {_WINDOW_TEXT}")
    return lo, hi


def page_after(token: str | None) -> tuple[int, int] | None:
    """A nextPage token of either form the service has been seen to emit (it accepts what it emits)."""
    if token is None or token == "":
        return None
    m = _PAGE_RE.match(token) or _OBSERVED_PAGE_RE.match(token)
    if not m:
        raise AfError(400, "AF20031", f"Invalid nextPage Input: {token}.")
    return int(m.group(1)), int(m.group(2))


def next_page(request: web.Request, tenant: str, ct: str, token: str | None, form: str) -> str:
    """NextPageUri: the documented form (`/api/v1/`, the request's parameters kept, nextPage), or
    the form seen from the real service (scenario `next_page_form = "observed"`)."""
    if form == "observed":
        return _observed_next_page(request, tenant, ct, token)
    params = [("contentType", ct)]
    for name in ("startTime", "endTime", "PublisherIdentifier"):
        value = param(request, name)
        if value is not None:
            params.append((name, value))
    params.append(("nextPage", token or ""))
    query = "&".join(f"{k}={quote(v, safe=':-.')}" for k, v in params)
    return f"https://{request.host}/api/v1/{tenant}/activity/feed/subscriptions/content?{query}"


def _observed_next_page(request: web.Request, tenant: str, ct: str, token: str | None) -> str:
    """NextPageUri as logged from the real service (counteractive/o365beat#39), not as documented:
    `/api/v1.0/`, lower-case parameter names, the window rewritten with seven fraction digits and
    `Z` (filled in when the request gave none, as the reference says), no PublisherIdentifier,
    and a `$`-separated page token. Elastic's o365 integration reads both `NextPageUri` and
    `Nextpageuri`; header names are case-insensitive either way."""
    lo, hi = window(request, now_ticks())
    page = ""
    if token:
        m = _PAGE_RE.match(token) or _OBSERVED_PAGE_RE.match(token)
        assert m is not None
        page = f"{int(m.group(1)):017d}{int(m.group(2)):06d}${_digits(lo)}$na0022"
    query = f"contenttype={ct}&endtime={_seven(hi)}&starttime={_seven(lo)}&nextpage={page}"
    return f"https://{request.host}/api/v1.0/{tenant}/activity/feed/subscriptions/content?{query}"


def _seven(ticks: int) -> str:
    """`2020-02-19T10:46:42.0000000Z`: how the service rewrites window times in its links."""
    text = rfc3339(ticks)  # ...SS[.fraction]Z
    base, _, frac = text.rstrip("Z").partition(".")
    return f"{base}.{frac.ljust(7, '0')[:7]}Z"


def _digits(ticks: int) -> str:
    """The window start as the 23 digits of the observed page tokens (`20200219104642000000000`)."""
    return "".join(ch for ch in _seven(ticks) if ch.isdigit()) + "00"
