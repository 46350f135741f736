"""`[service] backfill`: what `agent run` does after a scheduled reconcile found SIEM gaps.

In-process: a real archive and ledger on local disk, the reconcile report and the SIEM writer faked
(the engine's exactly-once behaviour against real SIEM APIs is tested in tests/backfill).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agent import app
from agent.archive.archive import Archive
from agent.backfill.policy import ScheduledBackfill
from agent.collect import Collector, StreamOutcome
from agent.config import CollectionConfig, Config, Credential, LocalStoreConfig, ServiceConfig, TenantConfig
from agent.errors import ConfigError
from agent.reconcile import schedule
from agent.reconcile.report import ReconcileReport, StreamReport
from agent.service.alerts import Alert, Alerter
from agent.service.supervisor import Service
from agent.siem import config as siem_config
from agent.siem.base import Item, SendResult
from agent.siem.registry import from_config
from agent.sources.base import Window
from agent.store.local import LocalStore
from tests.service.harness import Metrics as Scraped

TENANT = "00000000-0000-0000-0000-000000000001"
STREAM = "graph.directory_audits"
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
IDS = [f"Directory_{i:04d}" for i in range(25)]


class FakeWriter:
    """Acknowledges everything it is sent, and remembers it."""

    kind: ClassVar[str] = "elastic"
    identity = "fake"

    def __init__(self) -> None:
        self.sent: list[str] = []

    def destination(self, stream: str) -> str:
        return "fake-index"

    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes:
        return b"{}"

    def body_size(self, items: Sequence[Item]) -> int:
        return 2 * len(items)

    def whole(self, stream: str, rec: dict[str, Any]) -> bool:
        return True

    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult:
        self.sent += [i for i, _ in items]
        return SendResult(acked={i for i, _ in items}, requests=1)


class FakeSiem:
    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        return set()

    async def aclose(self) -> None:
        pass


def _cfg(tmp_path: Path, mode: str, limit: int = 10) -> Config:
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(STREAM,))
    svc = ServiceConfig(listen="127.0.0.1:0", notices=False, reconcile_interval=timedelta(seconds=0.2),
                        backfill=mode, backfill_max_records=limit)
    (tmp_path / "key").write_text("k")
    return Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), service=svc,
                  collection=CollectionConfig(poll_interval=timedelta(seconds=0.1)),
                  siem=siem_config.parse({"type": "elastic", "url": "https://127.0.0.1:9",
                                               "api_key_file": str(tmp_path / "key")}))


async def _archive(tmp_path: Path) -> Archive:
    archive = Archive(LocalStore(tmp_path / "store"))
    recs = [{"id": rid, "activityDisplayName": "Add user",
             "activityDateTime": (NOW - timedelta(hours=5, minutes=-i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            for i, rid in enumerate(IDS)]
    await archive.write(TENANT, STREAM, recs)
    return archive


def _report(missing: Sequence[str]) -> ReconcileReport:
    us = int((NOW - timedelta(hours=5)).timestamp() * 1e6)
    sr = StreamReport(TENANT, STREAM, agent_count=len(IDS), missing_in_siem=set(missing),
                      missing_at=dict.fromkeys(missing, us), siem_answered=True)
    return ReconcileReport(since=us - 3600 * 10**6, until=us + 7200 * 10**6, siem="elastic",
                           bucket_us=3600 * 10**6, generated_at=us, streams=[sr])


def _service(cfg: Config, archive: Archive, writer: Any = None) -> ScheduledBackfill:
    """The policy as `run()` sets it up, for calling it directly (the writer and SIEM are faked):
    `writer` is what the runtime's writer factory does, else the runtime's (patched) writer."""
    svc = Service(cfg)
    svc.alerter = Alerter(cfg.alerts, None, archive.store, svc.metrics)  # type: ignore[arg-type]
    s = cfg.service
    return ScheduledBackfill(s.backfill, s.backfill_max_records, archive,
                             writer or (lambda: app.open_writer(from_config(cfg), cfg, None, None)),  # type: ignore[arg-type]
                             lambda: (from_config(cfg), FakeSiem()), svc.metrics, svc.alerter, svc.clock,  # type: ignore[arg-type]
                             svc.task_failed)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeWriter, list[Alert]]:
    writer, alerts = FakeWriter(), []

    async def send(self: Alerter, alert: Alert, covers: object = ()) -> bool:
        if any(a.key == alert.key for a in alerts):
            return False
        alerts.append(alert)
        return True

    monkeypatch.setattr(app, "open_writer", lambda *a: writer)  # the runtime's writer
    monkeypatch.setattr(app, "open_siem", lambda *a: FakeSiem())  # the service's one SIEM
    monkeypatch.setattr(Alerter, "send", send)
    return writer, alerts


async def test_on_sends_at_most_the_bound_per_run_counts_acknowledged_records_and_alerts(
        tmp_path: Path, fakes: tuple[FakeWriter, list[Alert]]) -> None:
    writer, alerts = fakes
    archive = await _archive(tmp_path)
    svc = _service(_cfg(tmp_path, "on", limit=10), archive)
    summary = await svc.after_reconcile(_report(IDS))
    assert summary is not None and summary["acknowledged"] == 10 and summary["left_for_next_run"] == 15
    assert writer.sent == IDS[:10], "the oldest records go first, never more than the bound"
    m = Scraped.parse(svc.metrics.render().decode())
    assert m.get("agent_backfill_records_total", tenant=TENANT, stream=STREAM) == 10
    [alert] = alerts
    assert alert.kind == "backfill_sent" and alert.fields["acknowledged"] == 10
    assert alert.fields["left_for_next_run"] == 15

    # the next run: the SIEM still lacks all of them (not yet indexed), the ledger keeps them from being resent
    await svc.after_reconcile(_report(IDS))
    await svc.after_reconcile(_report(IDS))
    assert sorted(writer.sent) == IDS, "each record sent exactly once over the runs"
    m = Scraped.parse(svc.metrics.render().decode())
    assert m.get("agent_backfill_records_total", tenant=TENANT, stream=STREAM) == 25


async def test_alert_is_a_dry_run_announced_once(tmp_path: Path, fakes: tuple[FakeWriter, list[Alert]]) -> None:
    writer, alerts = fakes
    archive = await _archive(tmp_path)
    svc = _service(_cfg(tmp_path, "alert", limit=10), archive)
    for _ in range(2):
        summary = await svc.after_reconcile(_report(IDS[:4]))
        assert summary is not None and summary["would_send"] == 4
    assert writer.sent == [], "a dry run sends nothing"
    assert [a.kind for a in alerts] == ["backfill_dry_run"], "the same records are announced once"
    assert alerts[0].fields["would_send"] == 4
    assert not Scraped.parse(svc.metrics.render().decode()).get(
        "agent_backfill_records_total", tenant=TENANT, stream=STREAM)


async def test_off_does_nothing_and_a_failing_backfill_alerts_without_raising(
        tmp_path: Path, fakes: tuple[FakeWriter, list[Alert]], monkeypatch: pytest.MonkeyPatch) -> None:
    writer, alerts = fakes
    archive = await _archive(tmp_path)
    assert await _service(_cfg(tmp_path, "off"), archive).after_reconcile(_report(IDS)) is None
    assert writer.sent == [] and alerts == []

    def no_writer() -> None:
        raise ConfigError("siem.backfill_index is required")

    assert await _service(_cfg(tmp_path, "on"), archive, no_writer).after_reconcile(_report(IDS)) is None
    assert [(a.kind, a.fields["task"]) for a in alerts] == [("task_failed", "backfill")]


async def test_the_service_backfills_after_each_scheduled_reconcile(
        tmp_path: Path, fakes: tuple[FakeWriter, list[Alert]], monkeypatch: pytest.MonkeyPatch) -> None:
    writer, _ = fakes
    await _archive(tmp_path)

    async def reconcile_once(*_: object) -> ReconcileReport:
        return _report([i for i in IDS if i not in writer.sent])  # the SIEM holds what was sent

    async def collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        return StreamOutcome(tenant.id, stream, windows=1)

    monkeypatch.setattr(schedule, "reconcile_once", reconcile_once)
    monkeypatch.setattr(Collector, "collect_stream", collect)
    svc = Service(_cfg(tmp_path, "on", limit=10))
    runner = asyncio.create_task(svc.run())
    for _ in range(100):
        await asyncio.sleep(0.1)
        if len(writer.sent) == len(IDS):
            break
    svc.stop.set()
    assert await asyncio.wait_for(runner, 10) == 0
    assert sorted(writer.sent) == IDS, "three bounded runs closed the gap"


def test_config_keys_are_checked() -> None:
    from agent.config import parse

    base: dict[str, Any] = {"tenants": [{"id": TENANT, "client_id": "c", "client_secret_env": "X"}],
                            "store": {"type": "local", "path": "/tmp/x"}}
    assert parse(base).service.backfill == "off" and parse(base).service.backfill_max_records == 10_000
    for bad in ({"backfill": "yes"}, {"backfill": True}, {"backfill_max_records": 0},
                {"backfill_max_records": 10**9}):
        with pytest.raises(ConfigError):
            parse({**base, "service": bad, "siem": {"type": "elastic"}})
    with pytest.raises(ConfigError, match=r"\[siem\]"):
        parse({**base, "service": {"backfill": "alert"}})


def test_a_policy_without_the_siem_write_keys_is_a_config_error_before_the_service_starts(tmp_path: Path) -> None:
    from agent import preflight
    from agent.config import parse

    data: dict[str, Any] = {
        "tenants": [{"id": TENANT, "client_id": "c", "client_secret_env": "PATH"}],
        "store": {"type": "local", "path": str(tmp_path)},
        "siem": {"type": "splunk", "url": "https://127.0.0.1:9", "token_env": "PATH"}}  # no hec_url
    assert not preflight.problems(parse(data))
    found = preflight.problems(parse({**data, "service": {"backfill": "alert"}}))
    assert len(found) == 1 and "service.backfill" in found[0] and "siem.hec_url" in found[0]
