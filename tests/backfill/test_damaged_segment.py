"""A segment damaged after the reconcile counted it (its sidecar intact) stops only its own stream's
backfill, with the segment named; the other streams' missing records are still sent."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from tests.backfill.helpers import backfill_env

DAMAGED = "graph.signins.interactive"


def test_a_damaged_segment_stops_only_its_streams_backfill(tmp_path):
    with backfill_env(tmp_path, "elastic", config={"backfill_rate": 0}) as env:
        lost = env.lost()
        hour = (datetime.now(UTC) - timedelta(hours=18, minutes=30)).replace(minute=0, second=0, microsecond=0)
        (segment,) = env.store.glob(f"tenant=*/stream={DAMAGED}/date={hour:%Y-%m-%d}/hour={hour:%H}/*.ndjson.zst")
        os.truncate(segment, segment.stat().st_size - 8)
        key = segment.relative_to(env.store).as_posix()
        rc, done = env.reconcile("--backfill")
        assert rc == 3, done.get("backfill")  # the damaged stream's records are still missing in the SIEM
        by = {s["stream"]: s for s in done["streams"]}
        assert key in by[DAMAGED]["backfill"]["error"]
        assert by[DAMAGED]["backfill"]["remaining"] == len(by[DAMAGED]["missing_in_siem"]) > 0
        others = {i for name, s in by.items() if name != DAMAGED for i in s["missing_in_siem"]}
        assert others and others <= lost
        assert others <= set(env.ingested_counts()), "the other streams were backfilled"
