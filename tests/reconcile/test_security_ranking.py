"""SIEM gaps in Defender alerts are alerted first and as lost detections, ahead of log gaps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from agent.reconcile.diff import Gap
from agent.reconcile.report import ReconcileReport, StreamReport
from agent.reconcile.schedule import Findings, publish
from agent.service.alerts import Alert
from agent.service.health import Health
from agent.store.local import LocalStore

HOUR_US = 3600 * 1_000_000


class _Gauge:
    def labels(self, *_: str) -> _Gauge:
        return self

    def set(self, _: float) -> None:
        pass


class _Alerter:
    def __init__(self, store: Any) -> None:
        self.sent: list[Alert] = []
        self.store = store  # where the reconcile's SIEM state is recorded for `agent status`

    async def send(self, alert: Alert, covers: Any = ()) -> bool:
        self.sent.append(alert)
        return True


def test_security_gaps_go_first_with_high_priority(tmp_path: Path) -> None:
    report = ReconcileReport(since=0, until=10 * HOUR_US, siem="sentinel", bucket_us=HOUR_US, generated_at=0)
    for stream in ("graph.signins.interactive", "o365.exchange", "graph.security_alerts"):
        report.streams.append(StreamReport("t", stream, gaps=[Gap(HOUR_US, 2 * HOUR_US, 3)], siem_answered=True))
    alerter = _Alerter(LocalStore(tmp_path))
    metrics = SimpleNamespace(**{n: _Gauge() for n in (
        "reconcile_checked", "reconcile_missing", "reconcile_agent_missing", "reconcile_coverage",
        "reconcile_unverified", "reconcile_last_complete")})
    out = Findings(alerter.store, metrics, Health(), alerter, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    asyncio.run(publish(out, report))
    first, *rest = alerter.sent
    assert first.fields["stream"] == "graph.security_alerts" and first.fields["priority"] == "high"
    assert first.title == "The SIEM is missing Defender alerts"
    assert [a.fields["priority"] for a in rest] == ["normal", "normal"]
