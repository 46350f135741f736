"""Microsoft Graph audit log lists: auditLogs/signIns, directoryAudits, provisioning (v1.0 and beta).

Newest first, `$top` up to 1000, `@odata.nextLink` = the full original URL plus an opaque keyset
`$skiptoken`, so records that become visible mid-chain never shift a page. Licence, retention,
quota, duplicates and late records follow protocols.md §1.

This module is the listener's routing: which path goes where, the token and quota gate, the
injected faults, and the response bodies. What a list request asks for is `graph_query.py`, the
keyset paging `graph_paging.py`, the error answers `graph_errors.py`; Defender lists are
`security.py`, summarized sign-ins `summarized.py`, the audit log query API `audit_search.py`.
"""

from __future__ import annotations

import base64
import uuid
from urllib.parse import unquote

import orjson
from aiohttp import web

from emulator.microsoft import announcements, security, summarized
from emulator.microsoft.audit_search import AuditSearch
from emulator.microsoft.graph_errors import (
    GraphError,
    error_response,
    licence_refusal,
    segment_not_found,
    server_error,
    throttled,
    unauthorized,
)
from emulator.microsoft.graph_paging import Cursor, Query, Shuffled, decode_offset, encode_cursor, page
from emulator.microsoft.graph_query import RESOURCES, build_query, covers, options
from emulator.microsoft.tokens import Claims
from emulator.world.clock import now_ticks
from emulator.world.dataset import StreamData
from emulator.world.faults import HTML_ERROR, stall
from emulator.world.state import State

_ANNOUNCEMENTS = {
    "admin/serviceannouncement/issues": "admin/serviceAnnouncement/issues",
    "admin/serviceannouncement/messages": "admin/serviceAnnouncement/messages",
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
_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


def _v1_signin(body: bytes) -> bytes:
    """The v1.0 view of a (beta-shaped) stored signIn: only v1.0 properties, in the same order."""
    record = orjson.loads(body)
    return orjson.dumps({k: v for k, v in record.items() if k in V1_SIGNIN_KEYS})


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
        known = path in RESOURCES or path in _ANNOUNCEMENTS or path in security.PATHS
        if version not in ("v1.0", "beta") or not known:
            return error_response(request, segment_not_found(path.split("/")[-1]))
        try:
            claims = self._gate(request, reports=path in RESOURCES)
        except GraphError as err:
            return error_response(request, err)
        await stall(self.state.scenario.graph.stalls, request, "graph", self.state.faults)
        fault = self.state.faults.draw(list_request=True)
        if fault == "licence_error" and path not in RESOURCES:
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
                query = build_query(self.state, request, version, path, claims)
                response = self._respond(request, version, path, query, empty=fault == "empty_page")
        except GraphError as err:
            return error_response(request, err)
        except security.SecurityError as exc:
            return error_response(request, GraphError(exc.status, exc.code, exc.message, exc.headers))
        if fault == "empty_page":
            self.state.faults.log(request, "graph", fault, 200, claims.tenant, **covers(request))
        if fault in ("reset", "truncated"):
            self.state.faults.log(request, "graph", fault, 200, claims.tenant, **covers(request))
            return await self.state.faults.corrupt(request, fault, response)
        return response

    def _summarized(self, request: web.Request, version: str, call: tuple[str, str]) -> web.Response:
        """Summarized sign-ins (emulator/microsoft/summarized.py): beta only, a documented window only."""
        try:
            if version != "beta":  # the functions exist in the beta metadata only
                raise segment_not_found(call[0] or "getSummarized")
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
            raise unauthorized(checked)
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
            self.state.faults.log(request, "graph", "quota", 429, checked.tenant, **covers(request))
            raise throttled(wait)
        return checked

    def _fault(self, request: web.Request, fault: str, claims: Claims) -> web.Response:
        faults = self.state.faults
        if fault == "throttle":
            err = throttled(faults.faults.retry_after)
        elif fault == "token_expiry":
            err = unauthorized("Lifetime validation failed, the token is expired.")
        elif fault == "licence_error":
            # Premium tenants get the free tenant's answer now and then on report APIs
            # (microsoft-graph-docs#14120: "succeeds maybe 1/10 times"; -contrib#3759).
            err = licence_refusal()
        elif fault == "html_error":
            status = faults.choice((502, 503, 504))
            faults.log(request, "graph", fault, status, claims.tenant, **covers(request))
            return web.Response(status=status, body=HTML_ERROR, content_type="text/html")
        else:
            err = server_error(faults.choice((500, 502, 503, 504)))
        faults.log(request, "graph", fault, err.status, claims.tenant, **covers(request))
        return error_response(request, err)

    def _respond(self, request: web.Request, version: str, path: str, q: Query, empty: bool) -> web.Response:
        if empty:
            bodies: list[bytes] = []
            cursor, more = q.cursor, True
        else:
            shuffled = [self._shuffle(sd) for sd in q.streams] if q.unordered else None
            bodies, cursor, more = page(q, now_ticks(), shuffled)
            if version == "v1.0" and path == "auditlogs/signins":
                bodies = [_v1_signin(b) for b in bodies]
        context = f"https://{request.host}/{version}/$metadata#{RESOURCES[path][0]}"
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
