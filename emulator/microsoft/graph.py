"""Microsoft Graph audit log lists: auditLogs/signIns, directoryAudits, provisioning (v1.0 and beta).

Newest first, `$top` up to 1000, `@odata.nextLink` = the full original URL plus an opaque keyset
`$skiptoken`, so records that become visible mid-chain never shift a page. Licence, retention,
quota, duplicates and late records follow protocols.md §1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import math
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import orjson
from aiohttp import web

from emulator.microsoft import announcements, odata, security, summarized
from emulator.microsoft.audit_search import AuditSearch
from emulator.microsoft.tokens import Claims
from emulator.world.catalog import EVENT_TYPES
from emulator.world.clock import TICKS_PER_SECOND, http_date_short, now_ticks, rfc3339
from emulator.world.dataset import Entry, StreamData
from emulator.world.faults import HTML_ERROR, stall
from emulator.world.state import State

MAX_TOP = 1000
RETENTION_DAYS = {"free": 7, "p1": 30, "p2": 30}
_RESOURCES = {
    "auditlogs/signins": ("auditLogs/signIns", "createdDateTime"),
    "auditlogs/directoryaudits": ("auditLogs/directoryAudits", "activityDateTime"),
    "auditlogs/provisioning": ("auditLogs/provisioning", "activityDateTime"),
}
# The comparison operators each list documents on its time field, the rest answered 400 like any
# unsupported filter: signIns `eq`, `le`, `ge` (v1.0 signin-list.md; beta examples add `lt`),
# directoryAudits `eq`, `ge`, `le` (directoryaudit-list.md), provisioning `eq`, `gt`, `lt` only
# (provisioningobjectsummary-list.md: "$filter (eq, contains, gt, lt)").
TIME_OPS = {
    "auditlogs/signins": frozenset({"eq", "ge", "le", "lt"}),
    "auditlogs/directoryaudits": frozenset({"eq", "ge", "le"}),
    "auditlogs/provisioning": frozenset({"eq", "gt", "lt"}),
}
# provisioningobjectsummary-list.md promises no order (signIns and directoryAudits document newest
# first): without `$orderby` the emulator serves provisioning in a fixed pseudo-random order, so a
# client that assumes time order (stops early, or pages by the last time seen) loses records here.
UNORDERED = frozenset({"auditlogs/provisioning"})
_ANNOUNCEMENTS = {
    "admin/serviceannouncement/issues": "admin/serviceAnnouncement/issues",
    "admin/serviceannouncement/messages": "admin/serviceAnnouncement/messages",
}
_STREAM_BY_PATH = {
    "auditlogs/directoryaudits": "graph.directory_audits",
    "auditlogs/provisioning": "graph.provisioning",
}
# signIn properties of the v1.0 resource; beta adds the rest (signInEventTypes, servicePrincipalId, ...).
V1_SIGNIN_KEYS = frozenset(
    (
        "id",
        "createdDateTime",
        "userDisplayName",
        "userPrincipalName",
        "userId",
        "appId",
        "appDisplayName",
        "ipAddress",
        "clientAppUsed",
        "correlationId",
        "conditionalAccessStatus",
        "isInteractive",
        "riskDetail",
        "riskLevelAggregated",
        "riskLevelDuringSignIn",
        "riskState",
        "riskEventTypes",
        "riskEventTypes_v2",
        "resourceDisplayName",
        "resourceId",
        "status",
        "deviceDetail",
        "location",
        "appliedConditionalAccessPolicies",
    )
)
_ALLOWED_OPTIONS = {"$filter", "$top", "$skiptoken", "$orderby"}
_ORDER_DIRECTIONS = {"asc": True, "desc": False}
# OData system query options (without their `$`), which beta reads with or without the prefix
_ODATA_OPTIONS = ("filter", "top", "skiptoken", "orderby", "select", "expand", "count", "search", "skip", "format")
_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)
Cursor = tuple[int, str, int]  # (-ticks, id, copy) of the last item served


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(request: web.Request, err: GraphError) -> web.Response:
    """Graph's error envelope (protocols.md §1.6), with request-id headers."""
    rid = str(uuid.uuid4())
    inner = {
        "date": http_date_short(now_ticks()),
        "request-id": rid,
        "client-request-id": request.headers.get("client-request-id", rid),
    }
    if err.status == 429:
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    headers = {"request-id": rid, "client-request-id": inner["client-request-id"], **err.headers}
    return web.Response(
        status=err.status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _unauthorized(message: str) -> GraphError:
    return GraphError(
        401,
        "InvalidAuthenticationToken",
        message,
        {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
            'authorize", client_id="00000003-0000-0000-c000-000000000000"'
        },
    )


def _licence_refusal() -> GraphError:
    """Sign-ins need Entra ID P1/P2 (signin-list.md); the answer a free tenant gets."""
    return GraphError(
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        "Neither tenant is B2C or tenant doesn't have premium license",
    )


def decode_offset(token: str) -> str:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    if not raw.startswith("O"):
        raise ValueError(token)
    return raw[1:]


def encode_cursor(cursor: Cursor | None) -> str:
    raw = "S" if cursor is None else f"{-cursor[0]}|{cursor[2]}|{cursor[1]}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> Cursor | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw == "S":
            return None
        ticks, copy, rid = raw.split("|", 2)
        return (-int(ticks), rid, int(copy))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise GraphError(400, "invalidRequest", "$skiptoken is invalid or expired.") from None


@dataclass
class Query:
    streams: list[StreamData]
    lo: int
    hi: int | None
    ids: set[str] | None
    top: int
    cursor: Cursor | None
    retention_floor: int
    ascending: bool = False  # $orderby=<time field> asc: oldest first
    unordered: bool = False


def shuffle_key(record_id: str) -> int:
    """A record's fixed place in the unordered serving order (the same on every request)."""
    return int.from_bytes(hashlib.blake2b(record_id.encode(), digest_size=8).digest(), "big")


@dataclass
class Shuffled:
    """A stream's entries in serving order for an unordered list: keys are (shuffle_key, id)."""

    keys: list[tuple[int, str]]
    entries: list[Entry]
    exempt: bool

    @classmethod
    def of(cls, sd: StreamData) -> Shuffled:
        pairs = sorted((((shuffle_key(e.id), e.id), e) for e in sd.entries), key=lambda p: p[0])
        return cls([k for k, _ in pairs], [e for _, e in pairs], sd.exempt)


def _walk_unordered(sh: Shuffled, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """Like `_walk`, in shuffle order: the time bounds filter instead of ending the walk."""
    i = 0
    if q.cursor is not None:
        i = bisect_left(sh.keys, q.cursor[:2])
        if i < len(sh.entries) and sh.keys[i] == q.cursor[:2]:
            e = sh.entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (sh.keys[i][0], e.id, 1), e.dup_body
            i += 1
    floor = q.lo if sh.exempt else max(q.lo, q.retention_floor)
    for j in range(i, len(sh.entries)):
        e = sh.entries[j]
        if e.ticks < floor or (q.hi is not None and e.ticks > q.hi) or e.visible > now:
            continue
        if (e.ticks < q.retention_floor and not e.exempt_retention) or (q.ids is not None and e.id not in q.ids):
            continue
        key = sh.keys[j]
        yield (key[0], key[1], 0), e.body
        if e.dup_body is not None:
            yield (key[0], key[1], 1), e.dup_body


def _walk(sd: StreamData, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """Items of one stream from the cursor on, newest first; a duplicated record is served twice in a row."""
    if q.ascending:
        yield from _walk_up(sd, q, now)
        return
    entries = sd.entries
    if q.cursor is None:
        i = bisect_left(sd.keys, (-q.hi, "")) if q.hi is not None else 0
    else:
        i = bisect_left(sd.keys, q.cursor[:2])
        if i < len(entries) and sd.keys[i] == q.cursor[:2]:
            e = entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (sd.keys[i][0], e.id, 1), e.dup_body
            i += 1
    floor = q.lo if sd.exempt else max(q.lo, q.retention_floor)
    for j in range(i, len(entries)):
        e = entries[j]
        if e.ticks < floor:
            return
        if e.visible > now or (e.ticks < q.retention_floor and not e.exempt_retention):
            continue
        if q.ids is not None and e.id not in q.ids:
            continue
        key = sd.keys[j]
        yield (key[0], key[1], 0), e.body
        if e.dup_body is not None:
            yield (key[0], key[1], 1), e.dup_body


def _walk_up(sd: StreamData, q: Query, now: int) -> Iterator[tuple[Cursor, bytes]]:
    """`_walk` oldest first (`$orderby=<time field> asc`): the same entries, read from the end."""
    entries, keys = sd.entries, sd.keys
    floor = q.lo if sd.exempt else max(q.lo, q.retention_floor)
    if q.cursor is None:
        i = bisect_left(keys, (-floor + 1, ""))
    else:
        i = bisect_left(keys, q.cursor[:2])
        if i < len(entries) and keys[i] == q.cursor[:2]:
            e = entries[i]
            if q.cursor[2] == 0 and e.dup_body is not None and e.visible <= now:
                yield (keys[i][0], e.id, 1), e.dup_body
    for j in range(i - 1, -1, -1):
        e = entries[j]
        if q.hi is not None and e.ticks > q.hi:
            return
        if e.ticks < floor or e.visible > now or (e.ticks < q.retention_floor and not e.exempt_retention):
            continue
        if q.ids is not None and e.id not in q.ids:
            continue
        yield (keys[j][0], keys[j][1], 0), e.body
        if e.dup_body is not None:
            yield (keys[j][0], keys[j][1], 1), e.dup_body


def _merge_key(item: tuple[Cursor, bytes]) -> tuple[int, str, int]:
    """Oldest-first merge order (with reverse=True): a duplicate's second copy still comes second."""
    (neg, rid, copy), _ = item
    return neg, rid, -copy


def page(q: Query, now: int, shuffled: list[Shuffled] | None = None) -> tuple[list[bytes], Cursor | None, bool]:
    """One page: bodies, the cursor after the last one, and whether more items follow.
    `shuffled`: the streams' unordered views, for a query that is `unordered`."""
    if q.unordered and shuffled is not None:
        merged: Iterator[tuple[Cursor, bytes]] = heapq.merge(
            *(_walk_unordered(sh, q, now) for sh in shuffled), key=lambda item: item[0])
    else:
        walks = [_walk(sd, q, now) for sd in q.streams]
        merged = (
            heapq.merge(*walks, key=_merge_key, reverse=True)
            if q.ascending
            else heapq.merge(*walks, key=lambda item: item[0])
        )
    bodies: list[bytes] = []
    last: Cursor | None = q.cursor
    for cursor, body in merged:
        if len(bodies) == q.top:
            return bodies, last, True
        bodies.append(body)
        last = cursor
    return bodies, last, False


def _v1_signin(body: bytes) -> bytes:
    """The v1.0 view of a (beta-shaped) stored signIn: only v1.0 properties, in the same order."""
    record = orjson.loads(body)
    return orjson.dumps({k: v for k, v in record.items() if k in V1_SIGNIN_KEYS})


def options(request: web.Request, version: str) -> dict[str, str]:
    """Query options by lower-cased name: OData system query option names are case-insensitive
    (`$FILTER` = `$filter`, OData 4.01 §5.1), and on the beta endpoint "the $ prefix is optional"
    (learn.microsoft.com/graph/query-parameters), so beta's `filter=` is `$filter=`. On v1.0 the
    prefix is optional "for only a subset of APIs"; the audit log lists are not documented among
    them, so a bare name there stays an ignored custom parameter."""
    params = {k.lower(): v for k, v in request.query.items()}
    if version == "beta":
        for name in _ODATA_OPTIONS:
            if name in params and f"${name}" not in params:
                params[f"${name}"] = params.pop(name)
    return params


def ascending(params: dict[str, str], time_field: str) -> bool:
    """`$orderby`: the list's time field, `asc` or `desc` (default desc; names and directions
    case-insensitive). Documented for signIns (createdDateTime) and directoryAudits/provisioning
    (activityDateTime); ordering by any other property is refused."""
    value = params.get("$orderby")
    if value is None:
        return False
    words = value.replace("%20", " ").split()  # a double-encoded space, as the docs sometimes advise
    if 1 <= len(words) <= 2 and words[0].lower() == time_field.lower():
        direction = words[1].lower() if len(words) == 2 else "asc"  # OData: asc when not given
        if direction in _ORDER_DIRECTIONS:
            return _ORDER_DIRECTIONS[direction]
    raise GraphError(
        400,
        "invalidRequest",
        f"Invalid $orderby '{value}': this list can only be ordered by {time_field} asc or desc.",
    )


def _stream_names(path: str, flt: odata.Filter) -> list[str]:
    """The streams a list request reads (sign-ins: by event type, interactive by default)."""
    if path == "auditlogs/signins":
        return [EVENT_TYPES[t] for t in sorted(flt.event_types or {"interactiveUser"}) if t in EVENT_TYPES]
    return [_STREAM_BY_PATH[path]]


class GraphService:
    """The `graph` listener: stands for https://graph.microsoft.com."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._items: dict[tuple[str, str], list[bytes]] = {}
        self._shuffled: dict[int, Shuffled] = {}
        self.security = security.SecurityLists(state)

    def app(self) -> web.Application:
        app = web.Application()
        AuditSearch(self.state).add_routes(app)  # before the catch-all: security/auditLog/queries
        app.router.add_get("/{version}/{path:.+}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        path = request.match_info["path"].rstrip("/").lower()
        if (call := summarized.parse_call(path)) is not None:
            return self._summarized(request, version, call)
        known = path in _RESOURCES or path in _ANNOUNCEMENTS or path in security.PATHS
        if version not in ("v1.0", "beta") or not known:
            return error_response(
                request,
                GraphError(400, "BadRequest", f"Resource not found for the segment '{path.split('/')[-1]}'."),
            )
        try:
            claims = self._gate(request, reports=path in _RESOURCES)
        except GraphError as err:
            return error_response(request, err)
        await stall(self.state.scenario.graph.stalls, request, "graph", self.state.faults)
        fault = self.state.faults.draw(list_request=True)
        if fault == "licence_error" and path not in _RESOURCES:
            fault = None  # reported on the report APIs, not on service announcements
        if fault in ("throttle", "server_error", "html_error", "token_expiry", "licence_error"):
            return self._fault(request, fault, claims)
        try:
            if path in security.PATHS:  # Defender alerts and incidents: emulator/microsoft/security.py
                response = self.security.respond(request, version, path, claims, options(request, version),
                                                 empty=fault == "empty_page")
            elif path in _ANNOUNCEMENTS:
                response = self._announcements(request, version, path, claims, empty=fault == "empty_page")
            else:
                query = self._query(request, version, path, claims)
                response = self._respond(request, version, path, query, empty=fault == "empty_page")
        except GraphError as err:
            return error_response(request, err)
        except security.SecurityError as exc:
            return error_response(request, GraphError(exc.status, exc.code, exc.message, exc.headers))
        if fault == "empty_page":
            self.state.faults.log(request, "graph", fault, 200, claims.tenant, **self._covers(request))
        if fault in ("reset", "truncated"):
            self.state.faults.log(request, "graph", fault, 200, claims.tenant, **self._covers(request))
            return await self.state.faults.corrupt(request, fault, response)
        return response

    def _summarized(self, request: web.Request, version: str, call: tuple[str, str]) -> web.Response:
        """Summarized sign-ins (emulator/microsoft/summarized.py): beta only, a documented window only."""
        try:
            if version != "beta":  # the functions exist in the beta metadata only
                segment = call[0] or "getSummarized"
                raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
            claims = self._gate(request, reports=True)
            name, window = call
            if not name or window not in summarized.WINDOWS:
                raise GraphError(400, "BadRequest",
                                 f"Invalid aggregationWindow '{window}': expected 'h1', 'h6' or 'd1'.")
            params = options(request, version)
            if set(params) - {"$skiptoken"}:
                raise GraphError(400, "invalidRequest",
                                 f"Query option '{sorted(set(params) - {'$skiptoken'})[0]}' is not supported.")
            skip = params.get("$skiptoken", "0")
            if not skip.isdigit():
                raise GraphError(400, "invalidRequest", "Invalid $skiptoken.")
        except GraphError as err:
            return error_response(request, err)
        sd = self.state.dataset.get(claims.tenant, summarized.FUNCTIONS[name])
        return summarized.respond(request, sd, window, claims.tenant, int(skip))

    def _gate(self, request: web.Request, reports: bool) -> Claims:
        """Token, then the identity-and-access-reports quota (announcements are not under it)."""
        checked = self.state.tokens.check(request.headers.get("Authorization"), "graph")
        if isinstance(checked, str):
            raise _unauthorized(checked)
        if not reports:
            return checked
        # Identity and access reports: 5 requests / 10 s per app per tenant and 122 / 10 s per app
        # across all tenants (learn.microsoft.com/graph/throttling-limits); either one answers 429.
        now = now_ticks()
        wait = self.state.graph_quota.admit(f"{checked.app}|{checked.tenant}", now)
        if wait is None:
            wait = self.state.graph_app_quota.admit(checked.app, now)
            if wait is not None:
                self.state.graph_quota.forget(f"{checked.app}|{checked.tenant}")
        if wait is not None:
            self.state.faults.log(request, "graph", "quota", 429, checked.tenant, **self._covers(request))
            raise GraphError(
                429,
                "TooManyRequests",
                "Please retry again later.",
                {"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return checked

    def _fault(self, request: web.Request, fault: str, claims: Claims) -> web.Response:
        faults = self.state.faults
        if fault == "throttle":
            err = GraphError(
                429,
                "TooManyRequests",
                "Please retry again later.",
                {"Retry-After": str(max(1, math.ceil(faults.faults.retry_after)))},
            )
        elif fault == "token_expiry":
            err = _unauthorized("Lifetime validation failed, the token is expired.")
        elif fault == "licence_error":
            # Premium tenants get the free tenant's answer now and then on report APIs
            # (microsoft-graph-docs#14120: "succeeds maybe 1/10 times"; -contrib#3759).
            err = _licence_refusal()
        elif fault == "html_error":
            status = faults.choice((502, 503, 504))
            faults.log(request, "graph", fault, status, claims.tenant, **self._covers(request))
            return web.Response(status=status, body=HTML_ERROR, content_type="text/html")
        else:
            status = faults.choice((500, 502, 503, 504))
            code = {500: "UnknownError", 502: "BadGateway", 503: "serviceNotAvailable", 504: "GatewayTimeout"}
            err = GraphError(
                status,
                code[status],
                "The service is temporarily unavailable. Please retry later." if status == 503 else "",
                {"Retry-After": "1"} if status == 503 else {},
            )
        faults.log(request, "graph", fault, err.status, claims.tenant, **self._covers(request))
        return error_response(request, err)

    @staticmethod
    def _covers(request: web.Request) -> dict[str, object]:
        """For the fault log: the streams and the span of event times this list request (and the
        nextLinks after it) would have served: newest = the cursor or the filter's upper bound."""
        version = request.match_info.get("version", "")
        path = request.match_info.get("path", "").rstrip("/").lower()
        if path not in _RESOURCES:
            return {}
        params = options(request, version)
        try:
            flt = (
                odata.parse(params["$filter"], _RESOURCES[path][1], path == "auditlogs/signins" and version == "beta")
                if params.get("$filter", "").strip()
                else odata.Filter()
            )
            cursor = decode_cursor(params["$skiptoken"]) if "$skiptoken" in params else None
            up = ascending(params, _RESOURCES[path][1])
        except (odata.FilterError, GraphError):
            return {}
        newest, oldest = flt.hi, flt.lo
        if cursor is not None and up:  # oldest first: the cursor is a lower bound
            oldest = -cursor[0] if oldest is None else max(oldest, -cursor[0])
        elif cursor is not None:
            newest = -cursor[0] if newest is None else min(newest, -cursor[0])
        return {
            "streams": _stream_names(path, flt),
            "newest": None if newest is None else rfc3339(newest),
            "oldest": None if oldest is None else rfc3339(oldest),
        }

    def _query(self, request: web.Request, version: str, path: str, claims: Claims) -> Query:
        tenant = self.state.scenario.tenant(claims.tenant)
        assert tenant is not None  # tokens are only issued for scenario tenants
        signins = path == "auditlogs/signins"
        if signins and tenant.license == "free":
            raise _licence_refusal()
        params = options(request, version)
        for key in params:
            if key.startswith("$") and key not in _ALLOWED_OPTIONS:
                raise GraphError(
                    400, "invalidRequest", f"Query option '{key}' is not supported for this resource."
                )
        time_field = _RESOURCES[path][1]
        try:
            flt = (
                odata.parse(params["$filter"], time_field, signins and version == "beta", TIME_OPS[path])
                if params.get("$filter", "").strip()
                else odata.Filter()
            )
        except odata.FilterError as exc:
            raise GraphError(400, "invalidRequest", str(exc)) from None
        up = ascending(params, time_field)
        top = self._top(params.get("$top"))
        names = _stream_names(path, flt)
        streams = [sd for n in names if (sd := self.state.dataset.get(tenant.id, n)) is not None]
        cursor = decode_cursor(params["$skiptoken"]) if "$skiptoken" in params else None
        floor = now_ticks() - RETENTION_DAYS[tenant.license] * 86400 * TICKS_PER_SECOND
        return Query(
            streams=streams,
            lo=flt.lo if flt.lo is not None else 0,
            hi=flt.hi,
            ids=flt.ids,
            top=top,
            cursor=cursor,
            retention_floor=floor,
            ascending=up,
            unordered=path in UNORDERED and "$orderby" not in params,
        )

    @staticmethod
    def _top(value: str | None) -> int:
        if value is None:
            return MAX_TOP
        try:
            top = int(value)
        except ValueError:
            top = -1
        if not 1 <= top <= MAX_TOP:
            raise GraphError(
                400,
                "invalidRequest",
                f"Invalid page size specified: '{value}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
        return top

    def _respond(self, request: web.Request, version: str, path: str, q: Query, empty: bool) -> web.Response:
        if empty:
            bodies: list[bytes] = []
            cursor, more = q.cursor, True
        else:
            shuffled = [self._shuffle(sd) for sd in q.streams] if q.unordered else None
            bodies, cursor, more = page(q, now_ticks(), shuffled)
            if version == "v1.0" and path == "auditlogs/signins":
                bodies = [_v1_signin(b) for b in bodies]
        context = f"https://{request.host}/{version}/$metadata#{_RESOURCES[path][0]}"
        parts = [b'{"@odata.context":', orjson.dumps(context)]
        if more:
            parts += [b',"@odata.nextLink":', orjson.dumps(self._next_link(request, cursor))]
        parts += [b',"value":[', b",".join(bodies), b"]}"]
        rid = str(uuid.uuid4())
        return web.Response(
            body=b"".join(parts),
            headers={
                "Content-Type": _CONTENT_TYPE,
                "request-id": rid,
                "client-request-id": request.headers.get("client-request-id", rid),
            },
        )

    def _shuffle(self, sd: StreamData) -> Shuffled:
        if id(sd) not in self._shuffled:
            self._shuffled[id(sd)] = Shuffled.of(sd)
        return self._shuffled[id(sd)]

    def _announcements(
        self, request: web.Request, version: str, path: str, claims: Claims, empty: bool
    ) -> web.Response:
        """issues / messages: seeded items, offset paging behind an opaque $skiptoken."""
        key = (claims.tenant, path)
        if key not in self._items:
            plan, scn = self.state.scenario.graph, self.state.scenario
            make, count = (
                (announcements.issues, plan.issues)
                if path.endswith("issues")
                else (announcements.messages, plan.messages)
            )
            self._items[key] = [
                orjson.dumps(i) for i in make(scn.seed, claims.tenant, count, self.state.origin)
            ]
        items = self._items[key]
        params = {k.lower(): v for k, v in request.query.items()}
        try:
            size = announcements.page_size(
                params.get("$top"), request.headers.get("Prefer"), 100 if path.endswith("messages") else 1000
            )
            offset = int(decode_offset(params["$skiptoken"])) if "$skiptoken" in params else 0
        except ValueError:
            raise GraphError(400, "invalidRequest", "Invalid $top or $skiptoken.") from None
        chunk = [] if empty else items[offset : offset + size]
        end = offset + len(chunk)
        context = f"https://{request.host}/{version}/$metadata#{_ANNOUNCEMENTS[path]}"
        parts = [b'{"@odata.context":', orjson.dumps(context)]
        if empty or end < len(items):
            cursor = base64.urlsafe_b64encode(f"O{end}".encode()).decode().rstrip("=")
            link = self._next_link(request, None).rsplit("$skiptoken=", 1)[0] + f"$skiptoken={cursor}"
            parts += [b',"@odata.nextLink":', orjson.dumps(link)]
        parts += [b',"value":[', b",".join(chunk), b"]}"]
        return web.Response(body=b"".join(parts), headers={"Content-Type": _CONTENT_TYPE})

    @staticmethod
    def _next_link(request: web.Request, cursor: Cursor | None) -> str:
        raw = request.rel_url.raw_query_string
        kept = [p for p in raw.split("&") if p and unquote(p.split("=", 1)[0]).lower() != "$skiptoken"]
        kept.append(f"$skiptoken={encode_cursor(cursor)}")
        return f"https://{request.host}{request.rel_url.raw_path}?{'&'.join(kept)}"
