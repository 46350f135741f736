from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from agent.archive.archive import Archive
from agent.archive.lease import StoreLocked, TenantLeases, held_by, try_acquire
from agent.config import AlertsConfig, Credential, HttpConfig, Secret, TenantConfig, Webhook
from agent.errors import AuthError
from agent.http import HttpClient
from agent.service.alerts import Alert, Alerter
from agent.service.health import Health, StreamHealth
from agent.service.silence import is_silent, settled_hour
from agent.service.supervisor import app_shares, shard_tenants
from agent.sources.graph.notices import is_relevant, poll_once, to_alert
from agent.store.local import LocalStore


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    got: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(orjson.loads(await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", got
    await runner.cleanup()


async def test_alert_identity_is_sent_once_even_across_restarts(tmp_path: Path, receiver: tuple) -> None:
    url, got = receiver
    (tmp_path / "hook").write_text(url)
    cfg = AlertsConfig(webhooks=(Webhook("generic", Secret(f"file:{tmp_path / 'hook'}")),
                                 Webhook("teams", Secret(f"file:{tmp_path / 'hook'}")),
                                 Webhook("slack", Secret(f"file:{tmp_path / 'hook'}"))))
    store = LocalStore(tmp_path / "store")
    alert = Alert("siem_gap", "siem_gap:t:s:1", "SIEM lost records", "3 hours missing", fields={"stream": "s"})
    async with HttpClient(HttpConfig()) as http:
        assert await Alerter(cfg, http, store).send(alert)
        assert not await Alerter(cfg, http, store).send(alert)  # a new process remembers
    assert len(got) == 3
    generic, teams, slack = got
    assert generic["kind"] == "siem_gap" and generic["fields"] == {"stream": "s"}
    assert teams["attachments"][0]["content"]["type"] == "AdaptiveCard"  # type: ignore[index]
    assert "SIEM lost records" in slack["text"]  # type: ignore[operator]


async def test_hourly_cap_limits_a_flood(tmp_path: Path, receiver: tuple) -> None:
    url, got = receiver
    (tmp_path / "hook").write_text(url)
    cfg = AlertsConfig(webhooks=(Webhook("generic", Secret(f"file:{tmp_path / 'hook'}")),), max_per_hour=3)
    async with HttpClient(HttpConfig()) as http:
        alerter = Alerter(cfg, http, LocalStore(tmp_path / "store"))
        for i in range(6):
            await alerter.send(Alert("window_failed", f"k{i}", "t", "x"))
    assert len(got) == 3


def _tenant(i: int) -> TenantConfig:
    return TenantConfig(id=f"00000000-0000-0000-0000-{i:012d}", client_id="c", credential=Credential())


def test_sharding_splits_tenants_without_overlap() -> None:
    tenants = tuple(_tenant(i) for i in range(7))
    shards = [shard_tenants(tenants, (i, 3)) for i in range(3)]
    assert sorted(t.id for s in shards for t in s) == sorted(t.id for t in tenants)
    assert [len(s) for s in shards] == [3, 2, 2]


def test_each_shard_gets_its_tenants_share_of_an_app_budget() -> None:
    """The per-app reports quota spans all tenants: n agents of one app split it by tenants."""
    tenants = (*(_tenant(i) for i in range(7)),
               *(TenantConfig(id=f"10000000-0000-0000-0000-{i:012d}", client_id="d", credential=Credential())
                 for i in range(2)))
    shares = [app_shares(tenants, (i, 3)) for i in range(3)]
    assert sum(s.get("c", 0) for s in shares) == pytest.approx(1.0)
    assert sum(s.get("d", 0) for s in shares) == pytest.approx(1.0)
    assert app_shares(tenants, (0, 1)) == {"c": 1.0, "d": 1.0}


def test_health_reports_stalled_and_credentials() -> None:
    h = Health(started=1000.0)
    h.streams[("t", "a")] = StreamHealth(last_success=1990.0)
    h.streams[("t", "b")] = StreamHealth(last_success=None, last_error="refused", last_error_kind="AuthError",
                                         last_error_type=AuthError)
    assert h.stalled(60, now=2000.0) == [("t", "b")]
    assert h.problems(60) != [] and any("credentials" in p for p in h.problems(60))


async def test_silence_compares_an_hour_with_the_same_hour_of_the_days_before(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    stream = "graph.signins.interactive"
    now = datetime(2026, 11, 28, 12, 40, tzinfo=UTC)
    last = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # the last hour that ended >= 30 min ago
    recs = []
    for d in range(1, 8):  # 40 records in that hour on each of the 7 days before
        for i in range(40):
            t = last - timedelta(days=d) + timedelta(seconds=i)
            recs.append({"id": f"{d}-{i}", "createdDateTime": t.isoformat()})
    for h in range(1, 12):  # quiet night hours the same day do not raise the baseline
        recs.append({"id": f"night-{h}", "createdDateTime": (last - timedelta(hours=h)).isoformat()})
    await archive.write("t", stream, recs)
    assert await is_silent(archive, "t", stream, now, 0.1)
    await archive.write("t", stream, [{"id": f"now-{i}", "createdDateTime": (last + timedelta(seconds=i)).isoformat()}
                                      for i in range(30)])
    assert not await is_silent(Archive(archive.store), "t", stream, now, 0.1)
    # a Management Activity stream settles longer: at 12:40 its last settled hour is 08:00
    assert settled_hour("o365.exchange", now) == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)


class CountingStore(LocalStore):
    """A local store that counts listings: a silence check lists one partition per baseline hour."""

    lists = 0

    def list(self, prefix: str) -> AsyncIterator[str]:
        CountingStore.lists += 1
        return super().list(prefix)


async def test_a_silent_stream_is_checked_again_only_when_something_could_have_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quiet stream used to cost ~30 store listings every minute for as long as it stayed silent
    (about 2 % of a core for a service with many quiet streams). The verdict is kept until this
    service stores records for the stream, its settled hour moves, or SILENT_RECHECK passes."""
    from agent.collect import StreamOutcome
    from agent.config import Config, LocalStoreConfig
    from agent.service import silence
    from agent.service.supervisor import Service

    stream, last = "graph.signins.interactive", datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    now = [datetime(2026, 11, 28, 12, 40, tzinfo=UTC)]
    store = CountingStore(tmp_path)
    archive = Archive(store)
    times = [(f"{d}-{i}", last - timedelta(days=d) + timedelta(seconds=i)) for d in range(1, 8) for i in range(40)]
    await archive.write("t", stream, [{"id": rid, "createdDateTime": t.isoformat()} for rid, t in times])
    tenant = TenantConfig(id="t", client_id="c", credential=Credential(), streams=(stream,))
    svc = Service(Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path)), clock=lambda: now[0])
    sent: list[Alert] = []

    async def send(alert: Alert, covers: object = ()) -> bool:
        sent.append(alert)
        return True

    svc.alerter = type("Sink", (), {"send": staticmethod(send)})()  # type: ignore[assignment]
    checks = 0

    async def check() -> int:
        nonlocal checks
        before = CountingStore.lists
        await svc._check_stream(archive, tenant, stream, threshold=1e9)
        checks += 1
        return CountingStore.lists - before

    assert await check() > 20 and [a.kind for a in sent] == ["stream_silent"]
    assert await check() == 0, "nothing stored, same hour: the same verdict without reading the store"
    await svc._record(tenant, StreamOutcome("t", stream, stored=3))
    assert await check() > 20, "this service stored records: look again"
    assert await check() == 0
    monkeypatch.setattr(silence, "SILENT_RECHECK", 0.0)  # time passed: records another process added count
    assert await check() > 20
    monkeypatch.setattr(silence, "SILENT_RECHECK", 900.0)
    now[0] += timedelta(hours=1)  # the next settled hour
    assert await check() > 20
    assert [a.kind for a in sent].count("stream_silent") >= 1 and checks == 6


async def test_small_baseline_is_never_silent(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    now = datetime(2026, 11, 28, 12, 40, tzinfo=UTC)
    last = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
    await archive.write("t", "graph.directory_audits", [
        {"id": f"{d}", "activityDateTime": (last - timedelta(days=d)).isoformat()} for d in range(1, 8)])
    assert not await is_silent(archive, "t", "graph.directory_audits", now, 0.1)


def test_notice_relevance_and_alert_link() -> None:
    issue = {"id": "MO941128", "title": "Some customers' audit logs are delayed", "service": "Microsoft Purview",
             "impactDescription": "Users may not see audit log events.", "status": "serviceDegradation"}
    other = {"id": "EX1", "title": "Users can't send mail with large attachments", "service": "Exchange Online",
             "impactDescription": "Outlook on the web fails to attach files."}
    assert is_relevant(issue) and not is_relevant(other)
    alert = to_alert("issues", issue, _tenant(1))
    assert alert.key.endswith(":MO941128") and alert.link and "MO941128" in alert.link


def test_failure_alert_kinds_follow_the_exception_type_exactly() -> None:
    from agent.archive.lease import StoreLocked
    from agent.errors import ObjectExists, StoreError, TransientApiError
    from agent.service.alerts import failure_kind
    from agent.sources.management_activity.api import SubscriptionDisabled

    assert failure_kind(AuthError) == ("credentials_failing", "Credentials are failing")
    assert failure_kind(SubscriptionDisabled)[0] == "subscription_disabled"
    assert failure_kind(StoreError)[0] == failure_kind(ObjectExists)[0] == "store_failing"
    assert failure_kind(StoreLocked)[0] == "window_failed", "another collector holds the tenant: no store failure"
    assert failure_kind(None)[0] == failure_kind(TransientApiError)[0] == "window_failed"

    class AuthError2(Exception):
        pass

    AuthError2.__name__ = "AuthError"  # a class named like one is not that class
    assert failure_kind(AuthError2)[0] == "window_failed"


async def test_a_failed_pass_is_alerted_by_its_error_type_and_marks_credentials_unready(tmp_path: Path) -> None:
    from agent.collect import StreamOutcome
    from agent.config import Config, LocalStoreConfig, ServiceConfig
    from agent.service.supervisor import Service

    tenant = TenantConfig(id="00000000-0000-0000-0000-000000000001", client_id="c", credential=Credential(),
                          streams=("graph.directory_audits",), name="contoso")
    svc = Service(Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "s"),
                         service=ServiceConfig(listen="127.0.0.1:0", notices=False)))
    sent: list[Alert] = []

    class Sink:
        async def send(self, alert: Alert, covers: object = ()) -> bool:
            sent.append(alert)
            return True

    svc.alerter = Sink()  # type: ignore[assignment]
    await svc._record(tenant, StreamOutcome(tenant.id, "graph.directory_audits", error="AADSTS7000215: bad secret",
                                            error_kind="AuthError", error_type=AuthError))
    [alert] = sent
    assert alert.kind == "credentials_failing" and alert.title == "Credentials are failing"
    assert alert.fields["error_kind"] == "AuthError"
    assert svc.health.problems(3600) == ["credentials: contoso/graph.directory_audits: AADSTS7000215: bad secret"]


class _Notices:
    """A tenant's service announcements, as `NoticeSource` yields them (no HTTP)."""

    def __init__(self, tenant: TenantConfig) -> None:
        self.tenant = tenant

    async def notices(self, kind: str) -> AsyncIterator[dict[str, object]]:
        yield {"id": f"{kind}-1", "title": "Sign-in logs delayed", "lastModifiedDateTime": "2026-11-01T10:00:00Z",
               "service": "Microsoft Entra"}


class _Sink:
    async def send(self, alert: Alert, covers: object = ()) -> bool:
        return True


async def test_notices_are_written_under_the_tenants_collection_lease(tmp_path: Path) -> None:
    """The notices poller wrote its segments without the lease every other archive write holds, so
    `agent verify` could not tell its write in flight from a planted segment, and another collector
    was not told who writes the tenant."""
    store = LocalStore(tmp_path / "store")
    tenant = TenantConfig(id="6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", client_id="c", credential=Credential())
    holders: list[int | None] = []

    class Watched(Archive):
        async def write(self, tenant_id: str, stream: str, records: Any) -> Any:
            holders.append(await held_by(store, tenant_id))
            return await super().write(tenant_id, stream, records)

    await poll_once(_Notices(tenant), Watched(store), _Sink(), TenantLeases(store))  # type: ignore[arg-type]
    assert len(holders) == 2 and None not in holders
    assert await held_by(store, tenant.id) is None, "let go once written"

    other = await try_acquire(store, tenant.id)  # another collector of this tenant
    with pytest.raises(StoreLocked):
        await poll_once(_Notices(tenant), Watched(store), _Sink(), TenantLeases(store))  # type: ignore[arg-type]
    await other.release()
    assert len(holders) == 2, "nothing written while another process holds the tenant"
