"""`agent/reconcile/schedule.py` on its own: the loop gets only its parameters (the config, the archive,
a SIEM opener, where findings go, a pace), with the engine and the SIEM faked in process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.archive.archive import Archive
from agent.config import Config, Credential, LocalStoreConfig, ServiceConfig, TenantConfig
from agent.errors import ConfigError
from agent.reconcile import schedule
from agent.reconcile.diff import Gap
from agent.reconcile.report import ReconcileReport, StreamReport
from agent.reconcile.schedule import Findings, reconcile_loop
from agent.service.alerts import Alert
from agent.service.health import Health
from agent.service.metrics import Metrics
from agent.service.pace import Pace
from agent.service.status import load_siem_state
from agent.siem.config import SiemConfig
from agent.siem.config import parse as parse_siem
from agent.siem.registry import from_config
from agent.store.local import LocalStore
from tests.service.harness import Metrics as Scraped

TENANT = "00000000-0000-0000-0000-000000000001"
STREAMS = ("graph.directory_audits", "o365.exchange")
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR_US = 3600 * 10**6


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[Alert, Sequence[str]]] = []

    async def send(self, alert: Alert, covers: Sequence[str] = ()) -> bool:
        self.sent.append((alert, covers))
        return True


class Failures:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []

    async def __call__(self, task: str, exc: BaseException, *, logged: bool = False) -> None:
        self.seen.append((task, exc))


def _cfg(tmp_path: Path) -> Config:
    (tmp_path / "key").write_text("k")
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=STREAMS)
    return Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"),
                  service=ServiceConfig(listen="127.0.0.1:0", notices=False, reconcile_lookback=timedelta(hours=6),
                                        reconcile_interval=timedelta(minutes=10)),
                  siem=parse_siem({"type": "elastic", "url": "https://127.0.0.1:9",
                                   "api_key_file": str(tmp_path / "key")}))


def _pace(rounds: int) -> tuple[Pace, list[float]]:
    """A pace that lets the loop run `rounds` times, recording each wait."""
    waits: list[float] = []
    pace = Pace()
    pace.first_pass.set()

    async def sleeper(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= rounds:
            pace.stop.set()

    return Pace(stop=pace.stop, first_pass=pace.first_pass, sleeper=sleeper), waits


def _findings(tmp_path: Path) -> tuple[Findings, Sink]:
    sink = Sink()
    return Findings(LocalStore(tmp_path / "store"), Metrics(), Health(), sink, lambda: NOW), sink


def _gap_report(since: int, until: int) -> ReconcileReport:
    gap = StreamReport(TENANT, STREAMS[0], agent_count=10, siem_count=7, missing_in_siem={"a", "b", "c"},
                       gaps=[Gap(since, since + 2 * HOUR_US, 3)], siem_answered=True)
    ok = StreamReport(TENANT, STREAMS[1], agent_count=5, siem_count=5, siem_answered=True)
    return ReconcileReport(since=since, until=until, siem="elastic", bucket_us=HOUR_US, generated_at=until,
                           streams=[gap, ok])


async def test_a_run_reads_the_siem_it_is_given_publishes_and_hands_the_report_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)
    siem_cfg, siem = from_config(cfg), object()
    calls: list[dict[str, Any]] = []

    async def fake_reconcile(cfg_: Config, archive: Archive, siem_: object, pairs: list[tuple[str, str]],
                             since: datetime, until: datetime, **kw: Any) -> ReconcileReport:
        calls.append({"siem": siem_, "pairs": pairs, "since": since, "until": until, "name": kw["siem_name"]})
        return _gap_report(int(since.timestamp() * 1e6), int(until.timestamp() * 1e6))

    opened: list[int] = []

    def connect() -> tuple[SiemConfig, Any]:
        opened.append(1)
        return siem_cfg, siem

    handed: list[ReconcileReport] = []

    async def after(report: ReconcileReport) -> None:
        handed.append(report)

    monkeypatch.setattr(schedule, "reconcile", fake_reconcile)
    out, sink = _findings(tmp_path)
    pace, waits = _pace(rounds=2)
    failures = Failures()
    await asyncio.wait_for(reconcile_loop(cfg, Archive(out.store), connect, out, pace, failures, after=after), 5)

    assert len(calls) == 2 and len(opened) == 2 and waits == [600.0, 600.0]
    assert calls[0] == {"siem": siem, "pairs": [(TENANT, s) for s in STREAMS], "since": NOW - timedelta(hours=6),
                        "until": NOW, "name": "elastic"}
    assert len(handed) == 2 and failures.seen == []
    gaps = [(a, covers) for a, covers in sink.sent if a.kind == "siem_gap"]
    assert len(gaps) == 2 and gaps[0][0].fields["missing"] == 3 and len(gaps[0][1]) == 2  # two hour buckets
    m = Scraped.parse(out.metrics.render().decode())
    assert m.get("agent_reconcile_missing_in_siem", tenant=TENANT, stream=STREAMS[0]) == 3
    assert m.get("agent_reconcile_unverified", tenant=TENANT, stream=STREAMS[1]) == 0
    assert (await load_siem_state(out.store, TENANT, STREAMS[0]))["state"] == "gap"
    assert (await load_siem_state(out.store, TENANT, STREAMS[1]))["state"] == "ok"
    assert out.health.siem_unverified_since is None


async def test_a_siem_that_cannot_be_opened_is_an_unverified_episode_not_a_crash(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)

    def connect() -> tuple[SiemConfig, Any]:
        raise ConfigError("siem: Sentinel needs a [[tenants]] entry")

    handed: list[ReconcileReport] = []

    async def after(report: ReconcileReport) -> None:
        handed.append(report)

    out, sink = _findings(tmp_path)
    pace, _ = _pace(rounds=2)
    failures = Failures()
    await asyncio.wait_for(reconcile_loop(cfg, Archive(out.store), connect, out, pace, failures, after=after), 5)

    assert handed == [] and failures.seen == [], "a known error is no task failure"
    alerts = [a for a, _ in sink.sent]
    assert [a.kind for a in alerts] == ["siem_unverified", "siem_unverified"]
    assert alerts[0].key == alerts[1].key, "one episode: the same identity, so the alerter sends it once"
    assert "Sentinel needs a [[tenants]] entry" in alerts[0].text
    m = Scraped.parse(out.metrics.render().decode())
    assert all(m.get("agent_reconcile_unverified", tenant=TENANT, stream=s) == 1 for s in STREAMS)
    [problem] = out.health.problems(3600)
    assert problem.startswith("siem: could not verify since 2026-03-02T12:00:00Z: the reconcile run failed")


async def test_an_unexpected_error_is_reported_and_the_schedule_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)

    async def broken(*_: object, **__: object) -> ReconcileReport:
        raise IndexError("list index out of range")

    monkeypatch.setattr(schedule, "reconcile", broken)
    out, sink = _findings(tmp_path)
    pace, waits = _pace(rounds=3)
    failures = Failures()
    await asyncio.wait_for(reconcile_loop(cfg, Archive(out.store), lambda: (from_config(cfg), object()), out, pace,
                                          failures), 5)
    assert len(waits) == 3 and [t for t, _ in failures.seen] == ["reconcile"] * 3
    assert isinstance(failures.seen[0][1], IndexError)
    assert {a.kind for a, _ in sink.sent} == {"siem_unverified"}


async def test_the_first_run_waits_for_the_first_collection_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path)
    began: list[float] = []

    async def fake_reconcile(*a: Any, **kw: Any) -> ReconcileReport:
        began.append(asyncio.get_running_loop().time())
        return ReconcileReport(since=0, until=0, siem="elastic", bucket_us=HOUR_US, generated_at=0)

    monkeypatch.setattr(schedule, "reconcile", fake_reconcile)
    out, _ = _findings(tmp_path)
    pace, _ = _pace(rounds=1)
    pace.first_pass.clear()
    start = asyncio.get_running_loop().time()
    loop = asyncio.create_task(reconcile_loop(cfg, Archive(out.store), lambda: (from_config(cfg), object()), out,
                                              pace, Failures()))
    await asyncio.sleep(0.2)
    assert began == [], "no reconcile of a half-filled archive"
    pace.first_pass.set()
    await asyncio.wait_for(loop, 5)
    assert len(began) == 1 and began[0] - start >= 0.2
