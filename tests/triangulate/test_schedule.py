"""`agent/triangulate/schedule.py` on its own: the loop gets only its parameters (tenants, archive,
HTTP client, a Graph token-and-pacer lookup, metrics, an alert sink, a clock and a pace); the engine
and the witness read are faked in process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.archive.archive import Archive
from agent.config import Credential, TenantConfig
from agent.errors import TransientApiError
from agent.service.alerts import Alert
from agent.service.metrics import Metrics
from agent.service.pace import Pace
from agent.store.local import LocalStore
from agent.triangulate import schedule
from agent.triangulate.engine import CONTEXT, HOUR_US, Bucket, PairResult, Report
from agent.triangulate.schedule import triangulate_loop
from agent.triangulate.witness import spec_for
from tests.service.harness import Metrics as Scraped

TENANT = "00000000-0000-0000-0000-000000000001"
NONINT = "graph.signins.noninteractive"
NOW = datetime(2025, 12, 1, 6, 30, tzinfo=UTC)
T0 = 1_764_547_200 * 1_000_000  # 2025-12-01T00:00:00Z


class Sink:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def send(self, alert: Alert, covers: Sequence[str] = ()) -> bool:
        if any(a.key == alert.key for a in self.sent):  # as the Alerter: an identity goes out once
            return False
        self.sent.append(alert)
        return True


def _pace(rounds: int) -> tuple[Pace, list[float]]:
    waits: list[float] = []
    stop, first = asyncio.Event(), asyncio.Event()
    first.set()

    async def sleeper(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= rounds:
            stop.set()

    return Pace(stop=stop, first_pass=first, sleeper=sleeper), waits


def _lossy() -> PairResult:
    return PairResult(TENANT, spec_for(NONINT), ratio=1.0, judged_until=T0 + 3 * HOUR_US, buckets=[
        Bucket(T0, 20, 20, 20.0, "ok"), Bucket(T0 + HOUR_US, 10, 20, 20.0, "missing_in_a", 10, 0),
        Bucket(T0 + 2 * HOUR_US, 20, 20, 20.0, "ok")])


async def test_the_witness_is_read_with_what_the_loop_was_given_and_a_loss_alerts_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(NONINT,))
    archive, http, tokens, pacer = Archive(LocalStore(tmp_path)), object(), object(), object()
    looked_up: list[str] = []

    def graph(t: TenantConfig) -> tuple[Any, Any]:
        looked_up.append(t.id)
        return tokens, pacer

    engine: list[tuple[Any, ...]] = []
    witness: list[dict[str, Any]] = []

    async def fake_triangulate(archive_: Archive, pairs: Any, since: datetime, until: datetime, **kw: Any) -> Report:
        engine.append((archive_, pairs, since, until, kw["now"]))
        return Report(since, until, [])

    async def fake_witness_pairs(archive_: Archive, http_: Any, tenants: Any, graph_: Any, streams: Any,
                                 since: datetime, until: datetime, now: datetime, unread: Any) -> list[PairResult]:
        witness.append({"archive": archive_, "http": http_, "tenants": list(tenants), "lookup": graph_(tenants[0]),
                        "since": since, "until": until})
        return [_lossy()]

    monkeypatch.setattr(schedule, "triangulate", fake_triangulate)
    monkeypatch.setattr(schedule, "witness_pairs", fake_witness_pairs)
    metrics, sink = Metrics(), Sink()
    pace, waits = _pace(rounds=2)
    await asyncio.wait_for(triangulate_loop([tenant], archive, http, graph, metrics, sink,  # type: ignore[arg-type]
                                            lambda: NOW, pace, 7200.0), 5)
    assert waits == [7200.0, 7200.0]
    assert engine[0] == (archive, [(TENANT, (NONINT,))], NOW - CONTEXT, NOW, NOW)
    assert witness[0] == {"archive": archive, "http": http, "tenants": [tenant], "lookup": (tokens, pacer),
                          "since": NOW - CONTEXT, "until": NOW}
    assert looked_up == [TENANT, TENANT], "the tenant's Graph token and pacer, looked up through the parameter"
    assert [(a.kind, a.fields["stream"], a.fields["missing"]) for a in sink.sent] == [("upstream_gap", NONINT, 10)]
    scraped = Scraped.parse(metrics.render().decode())
    assert scraped.get("agent_upstream_missing", tenant=TENANT, stream=NONINT) == 10


async def test_an_agent_error_is_logged_and_the_schedule_goes_on_a_bug_reaches_the_supervisor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(NONINT,))
    archive = Archive(LocalStore(tmp_path))
    raised: list[BaseException] = [TransientApiError("archive listing timed out")]

    async def failing(*_: Any, **__: Any) -> Report:
        raise raised[0]

    monkeypatch.setattr(schedule, "triangulate", failing)
    pace, waits = _pace(rounds=2)
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(triangulate_loop([tenant], archive, None, None, Metrics(), Sink(),  # type: ignore[arg-type]
                                                lambda: NOW, pace, 60.0), 5)
    assert len(waits) == 2 and "Scheduled triangulation failed; will retry." in caplog.text

    raised[0] = KeyError("a bug")  # the supervisor restarts a crashed task and alerts it
    pace, _ = _pace(rounds=2)
    with pytest.raises(KeyError):
        await asyncio.wait_for(triangulate_loop([tenant], archive, None, None, Metrics(), Sink(),  # type: ignore[arg-type]
                                                lambda: NOW, pace, 60.0), 5)
