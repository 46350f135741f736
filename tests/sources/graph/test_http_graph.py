from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import orjson
import pytest

from agent.checkpoint import Cursor
from agent.config import CollectionConfig
from agent.errors import ApiError, LicenseError, ThrottledError, TokenRejected, TransientApiError
from agent.http import RateLimiter, Response, parse_retry_after, with_retries
from agent.sources.graph.source import GraphSource, classify, list_url
from agent.streams import spec

NOW = datetime(2026, 11, 28, 12, 0, 30, 500, tzinfo=UTC)


def resp(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(status, headers or {}, raw, "https://graph.example/beta/auditLogs/signIns?$skiptoken=SECRET")


def test_retry_after_is_parsed_as_float_or_date() -> None:
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    assert parse_retry_after("10") == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


async def test_rate_limiter_keeps_a_sliding_window() -> None:
    limiter = RateLimiter(5, 0.5, margin=0)
    t0 = time.monotonic()
    starts = []
    for _ in range(11):
        await limiter.acquire()
        starts.append(time.monotonic() - t0)
    # any 0.5 s window holds at most 5 starts
    assert all(starts[i + 5] - starts[i] >= 0.5 - 1e-3 for i in range(len(starts) - 5))


async def test_an_app_pacer_bounds_all_its_tenants_together() -> None:
    """Graph reports: 5 / 10 s per tenant *and* 122 / 10 s per app across tenants. Scaled down: 3
    tenants of 3 per 0.2 s under an app budget of 4 per 0.2 s; any 0.2 s holds at most 4 starts in
    all and 3 of one tenant, and the app budget is used (not one tenant after another)."""
    app = RateLimiter(4, 0.2, margin=0)
    tenants = [RateLimiter(3, 0.2, margin=0, within=app) for _ in range(3)]
    t0 = time.monotonic()
    starts: list[tuple[float, int]] = []

    async def run(i: int) -> None:
        for _ in range(8):
            await tenants[i].acquire()
            starts.append((time.monotonic() - t0, i))

    await asyncio.gather(*(run(i) for i in range(3)))
    times = sorted(t for t, _ in starts)
    assert all(times[k + 4] - times[k] >= 0.2 - 2e-3 for k in range(len(times) - 4))
    for i in range(3):
        mine = sorted(t for t, j in starts if j == i)
        assert all(mine[k + 3] - mine[k] >= 0.2 - 2e-3 for k in range(len(mine) - 3))
    assert times[-1] < 24 / 4 * 0.2 + 0.25  # paced by the app budget, not serialised


async def test_with_retries_honours_retry_after_and_gives_up() -> None:
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ThrottledError("slow down", retry_after=1.5)
        return "ok"

    assert await with_retries(flaky, attempts=5, what="t", sleep=fake_sleep) == "ok"
    assert sleeps == [1.5, 1.5]

    async def always() -> str:
        raise TransientApiError("boom")

    with pytest.raises(TransientApiError):
        await with_retries(always, attempts=3, what="t", sleep=fake_sleep)


async def test_token_rejection_invalidates_before_retry() -> None:
    dropped = asyncio.Event()
    state = {"n": 0}

    async def call() -> int:
        state["n"] += 1
        if not dropped.is_set():
            raise TokenRejected("401")
        return state["n"]

    async def invalidate() -> None:
        dropped.set()

    async def no_sleep(_: float) -> None:
        return None

    assert await with_retries(call, attempts=3, what="t", on_token_rejected=invalidate, sleep=no_sleep) == 2


def test_classify_page_and_errors() -> None:
    page = {"@odata.context": "x", "@odata.nextLink": "https://n", "value": [{"id": "1"}], "@microsoft.graph.tips": "t"}
    assert classify(resp(200, page), "s") == ([{"id": "1"}], "https://n")
    assert classify(resp(200, {"value": []}), "s") == ([], None)
    with pytest.raises(TransientApiError, match="malformed"):
        classify(resp(200, b'{"value": [{"id"'), "s")
    with pytest.raises(TransientApiError):
        classify(resp(200, {"error": "x"}), "s")
    with pytest.raises(ThrottledError) as t:
        classify(resp(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "2.5"}), "s")
    assert t.value.retry_after == 2.5
    with pytest.raises(TokenRejected):
        classify(resp(401, {"error": {"code": "InvalidAuthenticationToken"}}), "s")
    lic = {"error": {"code": "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "message": "Neither tenant"}}
    with pytest.raises(LicenseError, match="P1 or P2"):
        classify(resp(403, lic), "s")
    with pytest.raises(ApiError, match=r"AuditLog\.Read\.All"):
        classify(resp(403, {"error": {"code": "Authorization_RequestDenied"}}), "s")
    with pytest.raises(TransientApiError, match="HTML"):
        classify(resp(503, b"<html><body>Service Unavailable</body></html>"), "s")


def test_error_messages_drop_query_strings() -> None:
    with pytest.raises(TransientApiError) as err:
        classify(resp(500, {"error": {"code": "x"}}), "s")
    assert "SECRET" not in str(err.value)


def test_first_url_filters_event_type_and_time() -> None:
    from agent.sources.base import Window

    w = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 6, tzinfo=UTC))
    url, q = list_url("https://graph", spec("graph.signins.noninteractive"), w, 1000)
    assert url == "https://graph/beta/auditLogs/signIns"
    assert q["$filter"] == ("signInEventTypes/any(t: t eq 'nonInteractiveUser') and createdDateTime ge "
                            "2026-01-01T00:00:00Z and createdDateTime le 2026-01-01T06:00:00Z")
    url, q = list_url("https://graph", spec("graph.directory_audits"), w, 1000)
    assert url == "https://graph/v1.0/auditLogs/directoryAudits" and q["$filter"].startswith("activityDateTime ge")
    assert parse_qs(f"$top={q['$top']}")["$top"] == ["1000"]


def test_provisioning_windows_use_only_the_documented_strict_bounds() -> None:
    """provisioningobjectsummary-list.md documents `gt`/`lt` (no `ge`/`le`): the window [start, end)
    becomes `gt start-1ms and lt end`, so a record at exactly `start` is inside and one at `end` is
    left to the next window."""
    from agent.sources.base import Window

    w = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 6, tzinfo=UTC))
    url, q = list_url("https://graph", spec("graph.provisioning"), w, 1000)
    assert url == "https://graph/v1.0/auditLogs/provisioning"
    assert q["$filter"] == ("activityDateTime gt 2025-12-31T23:59:59.999Z and "
                            "activityDateTime lt 2026-01-01T06:00:00Z")


def test_plan_uses_lookback_then_cursor_minus_overlap() -> None:
    cfg = CollectionConfig(window=timedelta(hours=6), overlap=timedelta(hours=2), initial_lookback=timedelta(days=1))
    src = GraphSource.__new__(GraphSource)
    S = "graph.directory_audits"  # a real stream: plan reads its retention from the spec
    src.cfg = cfg
    first = src.plan(S, None, None, None, NOW)
    assert first[0].start == NOW.replace(microsecond=0) - timedelta(days=1) and len(first) == 4
    assert first[-1].end == NOW.replace(microsecond=0)
    cur = Cursor("t", S, NOW - timedelta(hours=1))
    again = src.plan(S, cur, None, None, NOW)
    assert again[0].start == (NOW - timedelta(hours=3)).replace(microsecond=0) and len(again) == 1
    assert src.plan(S, cur, NOW - timedelta(hours=12), NOW - timedelta(hours=11), NOW)[0].start == \
        (NOW - timedelta(hours=12)).replace(microsecond=0)


def test_tenants_of_one_app_share_its_pacer_and_passes_share_the_buffer(tmp_path: Path) -> None:
    from agent.archive.archive import Archive
    from agent.collect import Collector
    from agent.config import Config, Credential, LocalStoreConfig, TenantConfig
    from agent.store.local import LocalStore

    def tenant(i: int, app: str) -> TenantConfig:
        return TenantConfig(id=f"00000000-0000-4000-8000-{i:012d}", client_id=app, credential=Credential())

    a1, a2, b = tenant(1, "app-a"), tenant(2, "app-a"), tenant(3, "app-b")
    cfg = Config(tenants=(a1, a2, b), store=LocalStoreConfig(path=tmp_path),
                 collection=CollectionConfig(buffer_records=1000, segment_max_records=600))
    c = Collector(cfg, Archive(LocalStore(tmp_path)), None, app_share={"app-a": 0.5})  # type: ignore[arg-type]
    pacers = [c.sources.for_stream(t, "graph.provisioning").limiter for t in (a1, a2, b)]  # type: ignore[attr-defined]
    assert pacers[0] is not pacers[1] and pacers[0].within is pacers[1].within is not pacers[2].within
    assert (pacers[0].within.limit, pacers[2].within.limit) == (61, 122)  # this shard's half of app-a's 122
    assert c.flush_at() == 600
    c._active = 4
    assert c.flush_at() == 250


async def test_passes_start_round_robin_over_tenants_and_report_in_config_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tenant has its own quota: when passes queue, those running belong to as many tenants as
    possible (tenant by tenant, 12 passes were 6 tenants: a quarter of a 40-tenant app's budget)."""
    from agent.archive.archive import Archive
    from agent.collect import Collector, StreamOutcome
    from agent.config import Config, Credential, LocalStoreConfig, TenantConfig
    from agent.store.local import LocalStore

    streams = ("graph.signins.interactive", "graph.provisioning")
    tenants = tuple(TenantConfig(id=f"00000000-0000-4000-8000-{i:012d}", client_id="app", credential=Credential(),
                                 streams=streams) for i in range(3))
    cfg = Config(tenants=tenants, store=LocalStoreConfig(path=tmp_path),
                 collection=CollectionConfig(concurrent_streams=1))
    started: list[tuple[str, str]] = []

    async def fake(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        started.append((tenant.id[-1], stream))
        return StreamOutcome(tenant.id, stream)

    monkeypatch.setattr(Collector, "_collect_stream", fake)
    c = Collector(cfg, Archive(LocalStore(tmp_path)), None)  # type: ignore[arg-type]
    outcomes = await c.collect()
    assert [t for t, _ in started[:3]] == ["0", "1", "2"] and {s for _, s in started[:3]} == {streams[0]}
    assert [(o.tenant[-1], o.stream) for o in outcomes] == [(str(i), s) for i in range(3) for s in streams]
