"""The count witness's hourly rule (agent/witness.py)."""

from __future__ import annotations

import pytest

from agent.witness import judge, tolerance, witnessed


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
