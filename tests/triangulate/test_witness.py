"""The count witness's hourly rule (agent/triangulate/witness.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.triangulate.witness import judge, tolerance, witnessed

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
NONINT = "graph.signins.noninteractive"


@pytest.mark.parametrize(("archived", "summary", "verdict", "missing"), [
    (20, 20, "ok", 0),
    (18, 20, "ok", 0),  # within 2 records: an event at the hour's edge
    (17, 20, "missing_in_a", 3),
    (0, 5, "missing_in_a", 5),
    (980, 1000, "ok", 0),  # within 2 %
    (970, 1000, "missing_in_a", 30),
    (25, 20, "summary_lower", 0),  # shown, never a gap of the archive
    (0, 0, "ok", 0),
])
def test_judge(archived: int, summary: int, verdict: str, missing: int) -> None:
    assert judge(archived, summary) == (verdict, missing)


def test_tolerance_and_the_witnessed_streams() -> None:
    assert tolerance(0) == 2 and tolerance(1000) == 20
    assert witnessed(["graph.signins.noninteractive", "graph.signins.interactive"], None) == \
        ["graph.signins.noninteractive"]
    assert witnessed(["graph.signins.managedidentity"], ["graph.signins.noninteractive"]) == []


def test_the_service_schedules_triangulation_for_a_witnessed_stream_alone(tmp_path: Path) -> None:
    from agent.config import Config, Credential, LocalStoreConfig, ServiceConfig, TenantConfig
    from agent.service.supervisor import periodic

    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=(NONINT,))
    cfg = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "s"),
                 service=ServiceConfig(listen="127.0.0.1:0", notices=False))
    assert "triangulate" in periodic(cfg)


async def test_publish_counts_a_witnessed_loss_for_the_archived_stream_and_keeps_an_unread_one(
        tmp_path: Path) -> None:
    """Entra's count is no stream: only the archived one gets `agent_upstream_missing`. A summary that
    could not be read (a pair without buckets) leaves the last known value, never a reassuring 0."""
    from agent.service.metrics import Metrics
    from agent.triangulate.engine import HOUR_US, Bucket, PairResult, Report
    from agent.triangulate.schedule import publish
    from agent.triangulate.witness import spec_for
    from tests.service.harness import Metrics as Scraped

    sent: list[Any] = []

    async def send(alert: Any, covers: Any = ()) -> bool:
        sent.append(alert)
        return True

    t0 = 1_764_547_200 * 1_000_000  # 2025-12-01T00:00:00Z
    lossy = PairResult(TENANT, spec_for(NONINT), ratio=1.0, judged_until=t0 + 3 * HOUR_US, buckets=[
        Bucket(t0, 20, 20, 20.0, "ok"), Bucket(t0 + HOUR_US, 10, 20, 20.0, "missing_in_a", 10, 0),
        Bucket(t0 + 2 * HOUR_US, 20, 20, 20.0, "ok")])
    metrics, alerter = Metrics(), SimpleNamespace(send=send)
    report = Report(datetime.now(UTC), datetime.now(UTC), [lossy])
    assert await publish(report, metrics, alerter) == 1  # type: ignore[arg-type]
    (alert,) = sent
    assert alert.kind == "upstream_gap" and alert.fields["stream"] == NONINT and alert.fields["missing"] == 10
    assert "no sibling pipeline keeps a copy" in alert.text and "sibling's copy" not in alert.text
    unread = Report(datetime.now(UTC), datetime.now(UTC), [PairResult(TENANT, spec_for(NONINT))])
    await publish(unread, metrics, alerter)  # type: ignore[arg-type]
    text = metrics.render().decode()
    assert Scraped.parse(text).get("agent_upstream_missing", tenant=TENANT, stream=NONINT) == 10
    assert "entra." not in "".join(x for x in text.splitlines() if x.startswith("agent_upstream_missing"))
