"""Defender alerts and incidents from the Microsoft Graph security API (v1.0 `security/alerts_v2`,
`security/incidents`).

The Graph source's paging, link checks and retries apply unchanged; what differs is owned here:
the filter (on `lastUpdateDateTime`, so a window returns every alert *changed* in it, and the cursor
follows updates), the page size, the permissions named in a 403, the retention and the pacer. The
security API is not under the identity-reports quota (5 requests / 10 s); it fronts the Defender XDR
API, whose documented quota is 50 calls per minute and 1,500 per hour per app and tenant
("Microsoft Defender XDR incidents API": quotas and resource allocation). Graph publishes no number
of its own for these lists, so the pacer keeps under both: 25 requests per minute (1,500 per hour).
"""

from __future__ import annotations

from datetime import timedelta

from agent.archive.codec import Record
from agent.errors import ApiError
from agent.http import RateLimiter
from agent.sources.base import Window
from agent.sources.graph.source import GraphSource, _graph_time
from agent.streams import spec

REQUESTS_PER_MINUTE = 25  # Defender XDR API: 50/min and 1,500/hour; 25/min honours both when sustained
# `$top` for these lists: the docs give no maximum (the older Defender incidents API capped at 100);
# 100 is accepted everywhere we know of and keeps a page well inside any limit.
MAX_TOP = 100
# "within the time range you specified in your environment retention policy": Defender XDR keeps
# alerts and incidents 180 days ("Data storage and privacy", Microsoft Defender XDR).
RETENTION = timedelta(days=180)
_PERMISSIONS = {
    "graph.security_alerts": "SecurityAlert.Read.All",
    "graph.security_incidents": "SecurityIncident.Read.All",
}


def security_pacer() -> RateLimiter:
    """One pacer per tenant for both security lists (they count against the same quota)."""
    return RateLimiter(REQUESTS_PER_MINUTE, 60.0)


def list_url(base: str, stream: str, window: Window, top: int) -> tuple[str, dict[str, str]]:
    """First page of a window: every alert (incident) whose last update falls in it.

    `lastUpdateDateTime` is a documented `$filter` property of both lists. Filtering on it rather
    than on `createdDateTime` is what makes updates visible: a window re-read later (the overlap)
    returns an alert again only if it changed, and then as a new version.
    """
    s = spec(stream)
    flt = (f"{s.time_field} ge {_graph_time(window.start)} and "
           f"{s.time_field} le {_graph_time(window.end)}")
    return f"{base}/{s.api_version}/{s.path}", {"$filter": flt, "$top": str(min(top, MAX_TOP))}


class SecuritySource(GraphSource):
    """Defender alerts and incidents of one tenant, versioned by `lastUpdateDateTime`."""

    retention = RETENTION

    def first_page(self, stream: str, window: Window) -> tuple[str, dict[str, str]]:
        return list_url(self.tenant.endpoints.graph, stream, window, self.cfg.page_size)

    async def _page(self, stream: str, url: str, query: dict[str, str] | None) -> tuple[list[Record], str | None]:
        try:
            return await super()._page(stream, url, query)
        except ApiError as exc:
            if exc.status != 403:
                raise
            # The Graph source's 403 text names the audit-log permissions; these lists need their own.
            raise ApiError(f"{stream}: access denied (403 {exc.code}). Grant the app "
                           f"{_PERMISSIONS.get(stream, 'SecurityAlert.Read.All')} (application) with admin "
                           f"consent.", status=403, code=exc.code) from None
