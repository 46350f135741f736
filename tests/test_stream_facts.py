"""Per-source facts live on the stream spec: how far back an API can be asked again (reconcile's
re-collection, Graph's retention gaps) and how late an hour's records may arrive (silence checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.reconcile.engine import Options, StreamRun, _recollect
from agent.reconcile.report import StreamReport
from agent.service.silence import settled_hour
from agent.streams import STREAMS, spec

NOW = datetime(2026, 11, 28, 12, 10, tzinfo=UTC)


def test_each_stream_carries_its_apis_retention_and_settle_time() -> None:
    expected = {"graph": (timedelta(days=30), timedelta(minutes=30)),
                "management_activity": (timedelta(days=180), timedelta(hours=3)),
                "graph_security": (timedelta(days=180), timedelta(minutes=30)),
                "service_notices": (timedelta(days=30), timedelta(minutes=30))}
    for name, s in STREAMS.items():
        assert (s.retention, s.silence_settle) == expected[s.source], name


def test_settled_hour_follows_the_spec() -> None:
    assert settled_hour("graph.signins.interactive", NOW) == datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert settled_hour("o365.exchange", NOW) == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    assert spec("graph.security_alerts").retention > spec("graph.directory_audits").retention


class Side:
    async def holds(self, ids: set[str], start: int, end: int) -> set[str]:
        return set(ids)  # the re-collection found every one


async def recollect_of(stream: str, hole: datetime) -> tuple[list[tuple[str, datetime, datetime]], StreamReport]:
    calls: list[tuple[str, datetime, datetime]] = []

    async def recollect(tenant: str, s: str, start: datetime, end: datetime) -> None:
        calls.append((s, start, end))

    sr = StreamReport("t", stream, missing_in_agent={"x"})
    us = int(hole.timestamp()) * 1_000_000
    run = StreamRun(None, Side(), Options(), sr, us, us + 3_600_000_000, hole_at={"x": us})  # type: ignore[arg-type]
    await _recollect(run, recollect, NOW)
    return calls, sr


async def test_reconcile_recollects_a_defender_hole_within_defenders_180_days() -> None:
    # Before retention moved onto the spec, reconcile's table had no entry for the security source (KeyError).
    hole = datetime(2026, 10, 1, tzinfo=UTC)  # 58 days back: past Graph's 30, inside Defender's 180
    calls, sr = await recollect_of("graph.security_alerts", hole)
    assert calls == [("graph.security_alerts", hole, hole + timedelta(hours=1))] and sr.recollected == {"x"}
    calls, sr = await recollect_of("graph.directory_audits", hole)
    assert calls == [] and "past the API's retention" in sr.notes[0]
