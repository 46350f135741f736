"""Graph security API lists: `security/alerts_v2` and `security/incidents` (v1.0 and beta).

What the docs say and this serves (microsoft-graph-docs-contrib api-reference/v1.0/api/
security-list-alerts_v2.md, security-list-incidents.md):
- the current version of each alert or incident, most recent first ("The most recent alerts are
  displayed at the top of the list"); a later version replaces the earlier one when it is published;
- `$filter` on `lastUpdateDateTime` or `createdDateTime` (`ge/gt/le/lt/eq`, joined with `and`; both
  are documented filter properties; other documented properties such as `status` are not emulated
  and answer 400), `$top`, `$skip`, `$count`, and `@odata.nextLink` paging;
- 403 without `SecurityAlert.Read.All` / `SecurityIncident.Read.All` (`[security] permission = "missing"`);
- the Defender XDR API quota the security lists front, 50 calls per minute and 1,500 per hour per
  app and tenant ("Microsoft Defender XDR incidents API", quotas), answered 429 with Retry-After;
- availability: global and US Government L4/L5, not China (the docs' `global-us` include).
UNCONFIRMED and configurable by nothing yet: the maximum `$top` (1000 here, as the audit lists)
and the exact 403 text.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import orjson
from aiohttp import web

from emulator.microsoft import odata
from emulator.microsoft.quota import SlidingWindow
from emulator.microsoft.tokens import Claims
from emulator.world.clock import now_ticks
from emulator.world.dataset import Entry, StreamData
from emulator.world.state import State

PATHS = {"security/alerts_v2": "graph.security_alerts", "security/incidents": "graph.security_incidents"}
_CONTEXT = {"security/alerts_v2": "security/alerts_v2", "security/incidents": "security/incidents"}
_ROLES = {"security/alerts_v2": "SecurityAlert.Read.All,SecurityAlert.ReadWrite.All",
          "security/incidents": "SecurityIncident.Read.All,SecurityIncident.ReadWrite.All"}
_ALLOWED = {"$filter", "$top", "$skip", "$skiptoken", "$count", "$expand"}
MAX_TOP = 1000


class SecurityError(Exception):
    """Graph's error envelope fields; graph.py renders it."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _bounds(text: str) -> tuple[odata.Filter, odata.Filter]:
    """(lastUpdateDateTime bounds, createdDateTime bounds) of a filter on one of the two fields."""
    try:
        return odata.parse(text, "lastUpdateDateTime", False), odata.Filter()
    except odata.FilterError:
        pass
    try:
        return odata.Filter(), odata.parse(text, "createdDateTime", False)
    except odata.FilterError as exc:
        raise SecurityError(400, "BadRequest", f"Invalid filter clause: {exc}") from None


def _inside(e: Entry, updated: odata.Filter, created: odata.Filter) -> bool:
    for flt, ticks in ((updated, e.ticks), (created, e.created)):
        if (flt.lo is not None and ticks < flt.lo) or (flt.hi is not None and ticks > flt.hi):
            return False
    return not (updated.ids is not None and e.id.split("@", 1)[0] not in updated.ids)


def served(sd: StreamData, updated: odata.Filter, created: odata.Filter, now: int) -> Iterator[bytes]:
    """What the list returns now, newest first: each record's current version (a duplicate twice)."""
    for e in sd.entries:
        if e.visible > now or (e.superseded and e.superseded <= now) or not _inside(e, updated, created):
            continue
        yield e.body
        if e.dup_body is not None:
            yield e.dup_body


class SecurityLists:
    """The two lists, behind graph.py's token check and fault injection."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.per_minute = SlidingWindow(50, 60.0)
        self.per_hour = SlidingWindow(1500, 3600.0)

    def respond(self, request: web.Request, version: str, path: str, claims: Claims, params: dict[str, str],
                empty: bool) -> web.Response:
        if self.state.scenario.security.permission == "missing":
            raise SecurityError(403, "Forbidden", f"Missing application roles. API required roles: {_ROLES[path]}.")
        self._admit(f"{claims.app}|{claims.tenant}")
        for key in params:
            if key.startswith("$") and key not in _ALLOWED:
                raise SecurityError(400, "BadRequest", f"Query option '{key}' is not supported.")
        updated, created = _bounds(params["$filter"]) if params.get("$filter", "").strip() else (
            odata.Filter(), odata.Filter())
        top, skip = self._int(params, "$top", MAX_TOP, 1, MAX_TOP), self._int(params, "$skip", 0, 0, None)
        offset = skip + (self._int(params, "$skiptoken", 0, 0, None) if "$skiptoken" in params else 0)
        sd = self.state.dataset.get(claims.tenant, PATHS[path])
        items = list(served(sd, updated, created, now_ticks())) if sd is not None else []
        chunk = [] if empty else items[offset:offset + top]
        doc = [b'{"@odata.context":', orjson.dumps(f"https://{request.host}/{version}/$metadata#{_CONTEXT[path]}")]
        if params.get("$count", "").lower() == "true":
            doc += [b',"@odata.count":', str(len(items) - skip).encode()]
        if empty or offset + len(chunk) < len(items):
            doc += [b',"@odata.nextLink":', orjson.dumps(self._next(request, offset + len(chunk) - skip))]
        doc += [b',"value":[', b",".join(chunk), b"]}"]
        rid = str(uuid.uuid4())
        return web.Response(body=b"".join(doc), content_type="application/json",
                            headers={"request-id": rid, "client-request-id": request.headers.get("client-request-id",
                                                                                                rid)})

    def _admit(self, key: str) -> None:
        now = now_ticks()
        wait = self.per_minute.admit(key, now)
        if wait is None:
            wait = self.per_hour.admit(key, now)
            if wait is not None:
                self.per_minute.forget(key)
        if wait is not None:
            raise SecurityError(429, "TooManyRequests", "Please retry again later.",
                                {"Retry-After": str(max(1, math.ceil(wait)))})

    @staticmethod
    def _int(params: dict[str, str], name: str, default: int, lo: int, hi: int | None) -> int:
        text = params.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            value = lo - 1
        if value < lo or (hi is not None and value > hi):
            raise SecurityError(400, "BadRequest", f"Invalid value '{text}' for query option '{name}'.")
        return value

    @staticmethod
    def _next(request: web.Request, served_so_far: int) -> str:
        """The original URL plus an opaque-looking offset token (items served after `$skip`)."""
        raw = request.rel_url.raw_query_string
        kept = [p for p in raw.split("&") if p and p.split("=", 1)[0].lower() not in ("$skiptoken", "%24skiptoken")]
        kept.append(f"$skiptoken={served_so_far}")
        return f"https://{request.host}{request.rel_url.raw_path}?{'&'.join(kept)}"
