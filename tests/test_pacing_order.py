"""Every paced API call takes its pacing slot with the token in hand.

Microsoft (and the SIEMs) count requests as they arrive. A slot taken before the token, when the
token has to be fetched or renewed from Entra (seconds on a slow day), sent that request late, right
before the next slot's: two arrivals closer than the quota's spacing, and a 429 the pacer was meant
to prevent. The Graph audit log source already asked for its token first; these are the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from agent.config import CollectionConfig, Credential, TenantConfig
from agent.http import RateLimiter
from agent.sources.deep_history.api import AuditSearchSource
from agent.sources.graph.notices import NoticeSource
from agent.triangulate import witness
from tests.siem.fakes import FakeHttp, answer

TENANT = TenantConfig(id="6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", client_id="c", credential=Credential())


class Tokens:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def token(self) -> str:
        self.events.append("token")
        return "t"

    async def invalidate(self) -> None:
        return None


class Recorded(RateLimiter):
    def __init__(self, events: list[str]) -> None:
        super().__init__(1000, 1.0)
        self.events = events

    async def acquire(self) -> None:
        self.events.append("slot")
        await super().acquire()


def _notices(http: FakeHttp, events: list[str]) -> Callable[[], Awaitable[object]]:
    source = NoticeSource(TENANT, http, Tokens(events))  # type: ignore[arg-type]
    source.limiter = Recorded(events)
    return lambda: source._page(f"{TENANT.endpoints.graph}/v1.0/admin/serviceAnnouncement/issues")


def _witness(http: FakeHttp, events: list[str]) -> Callable[[], Awaitable[object]]:
    url = f"{TENANT.endpoints.graph}/beta/reports/getAzureADApplicationSignInSummary(period='D7')"
    return lambda: witness._page(http, Tokens(events), TENANT, Recorded(events), url,  # type: ignore[arg-type]
                                 "graph.signins.interactive")


def _deep_history(http: FakeHttp, events: list[str]) -> Callable[[], Awaitable[object]]:
    source = AuditSearchSource(TENANT, http, Tokens(events), Recorded(events),  # type: ignore[arg-type]
                               CollectionConfig())
    return lambda: source._send("GET", f"{source.base}/q1", "o365.exchange")


@pytest.mark.parametrize("call", [_notices, _witness, _deep_history], ids=["notices", "witness", "deep_history"])
async def test_the_token_comes_before_the_pacing_slot(call: Callable[[FakeHttp, list[str]],
                                                                     Callable[[], Awaitable[object]]]) -> None:
    events: list[str] = []
    http = FakeHttp([answer(503), answer(200, {"value": []})])
    await call(http, events)()
    assert len(http.sent) == 2, "one retry: each attempt asks again"
    assert events == ["token", "slot", "token", "slot"]
