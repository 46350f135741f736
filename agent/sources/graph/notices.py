"""Microsoft service notices about logging, forwarded to the security team.

In September 2024 Microsoft told tenant admins (Message Center / Service Health) that logs had
been lost; security teams heard weeks later. This bridge polls Graph's service communications
(`admin/serviceAnnouncement/issues` and `messages`), archives them as the
`graph.service_announcements` stream, and forwards each notice that concerns audit, sign-in or
security logging exactly once to the alert channels, with a link to the admin centre.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from agent.archive.archive import Archive
from agent.archive.lease import StoreLocked, TenantLeases
from agent.auth import TokenProvider
from agent.config import TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient, RateLimiter, with_retries
from agent.logs import event
from agent.service.alerts import Alert, AlertSink
from agent.service.pace import Pace, TaskFailed
from agent.sources.graph.source import classify

log = logging.getLogger("agent.sources.graph.notices")
STREAM = "graph.service_announcements"
RELEVANT = re.compile(
    r"audit|sign-?in|\blog(s|ging|ged)?\b|sentinel|defender|purview|entra|azure active directory|"
    r"activity (api|feed)|management activity|diagnostic setting|siem",
    re.IGNORECASE,
)
LINKS = {
    "issues": "https://admin.microsoft.com/Adminportal/Home#/servicehealth/:/alerts/{id}",
    "messages": "https://admin.microsoft.com/AdminPortal/Home#/MessageCenter/:/messages/{id}",
}


def _text(notice: dict[str, Any]) -> str:
    parts = [notice.get("title"), notice.get("service"), notice.get("feature"), notice.get("featureGroup"),
             notice.get("impactDescription"), " ".join(notice.get("services") or [])]
    body = notice.get("body")
    if isinstance(body, dict):
        parts.append(body.get("content"))
    return " ".join(str(p) for p in parts if p)


def is_relevant(notice: dict[str, Any]) -> bool:
    """Does a notice concern the logs security teams rely on? (title, services, impact, body)"""
    return bool(RELEVANT.search(_text(notice)))


def to_alert(kind: str, notice: dict[str, Any], tenant: TenantConfig) -> Alert:
    nid = str(notice.get("id", "?"))
    impact = str(notice.get("impactDescription") or notice.get("category") or "")
    return Alert(
        "service_notice", f"service_notice:{tenant.id}:{nid}",
        f"Microsoft notice {nid}: {notice.get('title', '(no title)')}",
        impact[:1000] or "Microsoft published a notice that concerns logging.",
        severity="warning",
        fields={"tenant": tenant.label, "id": nid, "kind": kind[:-1],
                "service": notice.get("service") or ", ".join(notice.get("services") or []),
                "status": notice.get("status", ""), "start": notice.get("startDateTime", "")},
        link=LINKS[kind].format(id=nid),
    )


class NoticeSource:
    def __init__(self, tenant: TenantConfig, http: HttpClient, tokens: TokenProvider, attempts: int = 5) -> None:
        self.tenant, self.http, self.tokens, self.attempts = tenant, http, tokens, attempts
        self.limiter = RateLimiter(5, 10.0)

    async def notices(self, kind: str) -> AsyncIterator[dict[str, Any]]:
        url: str | None = f"{self.tenant.endpoints.graph}/v1.0/admin/serviceAnnouncement/{kind}"
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            page, url = await self._page(url)
            for notice in page:  # a value that is not an object goes on to the archive, which keeps it aside
                yield dict(notice) if isinstance(notice, dict) else notice

    async def _page(self, url: str) -> tuple[list[Any], str | None]:
        async def attempt() -> tuple[list[Any], str | None]:
            token = await self.tokens.token()  # first: a slot is spent only by a request ready to go
            await self.limiter.acquire()
            resp = await self.http.request("GET", url, tag=(self.tenant.id, "graph"),
                                           headers={"Authorization": f"Bearer {token}"})
            records, nxt = classify(resp, STREAM)
            return list(records), nxt

        return await with_retries(attempt, attempts=self.attempts, what=f"{self.tenant.label}/{STREAM}",
                                  on_token_rejected=self.tokens.invalidate, limiter=self.limiter)


async def poll_once(source: NoticeSource, archive: Archive, alerts: AlertSink, leases: TenantLeases) -> int:
    """Archive every notice and forward the relevant ones; returns how many were forwarded now.

    The write holds the tenant's collection lease, as every archive write does: it names the writer
    to another collector, and `agent verify` waits for a segment written under it to be chained
    instead of calling it unexpected (raises StoreLocked when another process holds the tenant)."""
    forwarded = 0
    for kind in ("issues", "messages"):
        batch = [n async for n in source.notices(kind)]
        # Graph issues carry lastModifiedDateTime; archive needs it for the event-time partition.
        async with leases.hold(source.tenant.id):
            await archive.write(source.tenant.id, STREAM, batch)
        for notice in batch:
            if isinstance(notice, dict) and is_relevant(notice) and \
                    await alerts.send(to_alert(kind, notice, source.tenant)):
                forwarded += 1
    return forwarded


async def notices_loop(tenants: Sequence[TenantConfig], http: HttpClient,
                       tokens: Callable[[TenantConfig], TokenProvider], archive: Archive, alerts: AlertSink,
                       pace: Pace, interval: float, task_failed: TaskFailed, leases: TenantLeases) -> None:
    """`agent run`: poll every tenant's notices every `interval` seconds until the service stops.
    `leases` are the collection's (this process's passes and notices share a tenant's lease)."""
    sources = [NoticeSource(t, http, tokens(t)) for t in tenants]
    while pace.running:
        for source in sources:
            try:
                await poll_once(source, archive, alerts, leases)
            except StoreLocked as exc:  # another collector writes this tenant now: the next round reads them
                event(log, logging.WARNING, "Another collector holds this tenant; notices wait for the next round.",
                      tenant=source.tenant.label, error=str(exc))
            except AgentError as exc:
                event(log, logging.WARNING, "Service notices could not be read.", tenant=source.tenant.label,
                      error=str(exc), hint="grant ServiceHealth.Read.All and ServiceMessage.Read.All")
            except Exception as exc:  # noqa: BLE001 - one tenant's failure must not end the others' notices
                await task_failed(f"notices:{source.tenant.label}", exc)
        await pace.sleep(interval)
