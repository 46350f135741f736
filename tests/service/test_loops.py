"""The service's own loops survive any exception: they alert and keep going.

One damaged segment (or any bug) in the scheduled reconcile must not end every SIEM-gap alert of the
service, and a loop that fails must say so to the alert channels, not only in the log.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from agent.collect import Collector, StreamOutcome
from agent.config import CollectionConfig, Config, Credential, LocalStoreConfig, ServiceConfig, TenantConfig
from agent.reconcile import schedule
from agent.reconcile.report import ReconcileReport
from agent.service.alerts import Alert, Alerter
from agent.service.supervisor import Service
from agent.siem import config as siem_config
from tests.service.harness import Metrics as Scraped
from tests.service.harness import until

TENANT = "00000000-0000-0000-0000-000000000001"
STREAM = "graph.directory_audits"


def _cfg(tmp_path: Path) -> Config:
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(STREAM,))
    svc = ServiceConfig(listen="127.0.0.1:0", notices=False, reconcile_interval=timedelta(seconds=0.2),
                        restart_backoff_max=timedelta(seconds=0.2))
    return Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), service=svc,
                  collection=CollectionConfig(poll_interval=timedelta(seconds=0.1)),
                  # only makes the service schedule reconciles; the run is faked
                  siem=siem_config.parse({"type": "elastic", "url": "https://siem.test", "api_key_env": "UNUSED"}))


async def test_a_reconcile_that_raises_any_exception_alerts_and_the_schedule_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = 0

    async def reconcile_once(*_: object) -> ReconcileReport:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise IndexError("list index out of range")  # what a damaged segment used to raise
        return ReconcileReport(since=0, until=0, siem="elastic", bucket_us=3600 * 10**6, generated_at=0)

    async def collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        return StreamOutcome(tenant.id, stream, windows=1)

    alerts: list[Alert] = []

    async def send(self: Alerter, alert: Alert, covers: object = ()) -> bool:
        alerts.append(alert)
        return True

    monkeypatch.setattr(schedule, "reconcile_once", reconcile_once)
    monkeypatch.setattr(Collector, "collect_stream", collect)
    monkeypatch.setattr(Alerter, "send", send)
    svc = Service(_cfg(tmp_path))
    runner = asyncio.create_task(svc.run())
    await until(lambda: runs >= 6 or runner.done(), "six scheduled reconciles")
    svc.stop.set()
    assert await asyncio.wait_for(runner, 10) == 0
    assert runs >= 6, "the schedule stopped after the failures"
    failed = [a for a in alerts if a.kind == "task_failed"]
    assert failed and failed[0].fields == {"task": "reconcile", "kind": "IndexError"}
    assert len({a.key for a in failed}) == 1, "one identity per task and hour: the alerter sends it once"
    m = Scraped.parse(svc.metrics.render().decode())
    assert not m.get("agent_task_restarts_total", task="reconcile"), "the loop itself survived"


async def test_a_crashed_task_alerts_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0

    async def collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("injected bug")
        return StreamOutcome(tenant.id, stream, windows=1)

    alerts: list[Alert] = []

    async def send(self: Alerter, alert: Alert, covers: object = ()) -> bool:
        alerts.append(alert)
        if alert.kind == "task_failed":
            raise OSError("the alert channel is down too")  # must not take the supervisor down
        return True

    monkeypatch.setattr(Collector, "collect_stream", collect)
    monkeypatch.setattr(Alerter, "send", send)
    cfg = _cfg(tmp_path)
    svc = Service(Config(**{**cfg.__dict__, "siem": None}))
    runner = asyncio.create_task(svc.run())
    await until(lambda: calls >= 3 or runner.done(), "the crashed task to run again twice")
    svc.stop.set()
    assert await asyncio.wait_for(runner, 10) == 0
    assert calls >= 3
    assert [a.fields["task"] for a in alerts if a.kind == "task_failed"] == [f"{TENANT}/{STREAM}"]


async def test_a_damaged_stream_does_not_stop_the_stall_checks_of_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.errors import DamagedSegment

    checked: list[str] = []

    async def check(self: Service, archive: object, tenant: TenantConfig, stream: str, threshold: float) -> None:
        if stream == STREAM:
            raise DamagedSegment("tenant=t/stream=s/date=2026-03-01/hour=10/x.ndjson.zst: cut short")
        checked.append(stream)

    async def collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        return StreamOutcome(tenant.id, stream, windows=1)

    alerts: list[Alert] = []

    async def send(self: Alerter, alert: Alert, covers: object = ()) -> bool:
        alerts.append(alert)
        return True

    monkeypatch.setattr(Service, "_check_stream", check)
    monkeypatch.setattr(Collector, "collect_stream", collect)
    monkeypatch.setattr(Alerter, "send", send)
    cfg = _cfg(tmp_path)
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(STREAM, "o365.exchange"))
    svc = Service(Config(**{**cfg.__dict__, "siem": None, "tenants": (tenant,),
                            "service": ServiceConfig(listen="127.0.0.1:0", notices=False,
                                                     stall_threshold=timedelta(seconds=0.4))}))
    runner = asyncio.create_task(svc.run())
    await until(lambda: checked.count("o365.exchange") >= 3 or runner.done(), "three stall-check rounds")
    svc.stop.set()
    assert await asyncio.wait_for(runner, 10) == 0
    assert checked.count("o365.exchange") >= 3, "the stream after the damaged one is checked on every round"
    assert any(a.kind == "task_failed" and a.fields["task"] == f"stall-check:{TENANT}/{STREAM}" for a in alerts)
