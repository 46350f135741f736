"""Listing windows as pure functions of a fixed `now`, checked against labelled fake blobs
(the Beats `listblobs_test.go` style): which blobs does each planned window cover?"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from agent.sources.base import Window
from agent.sources.management_activity.windows import (
    MAX_WINDOW,
    grid_split,
    oldest_listable,
    plan_windows,
    request_span,
    slot_end,
)

NOW = datetime(2026, 3, 10, 12, 34, 56, 789000, tzinfo=UTC)
LOOKBACK = timedelta(hours=167, minutes=55)
H = timedelta(hours=1)

# contentCreated of fake blobs, by label: "dayN" = N days ago.
BLOBS = {
    "day8_gone": NOW - timedelta(days=8),
    "day7_beyond_edge": NOW - timedelta(days=7, minutes=1),
    "day7_inside_edge": NOW - timedelta(hours=167, minutes=50),
    "day3_a": NOW - timedelta(days=3, hours=5),
    "day1_a": NOW - timedelta(days=1, hours=3),
    "late_1": NOW - timedelta(hours=20),  # made available before the cursor, listed late
    "today_1": NOW - timedelta(hours=1, minutes=30),
    "today_2": NOW - timedelta(seconds=2),
    "future_1": NOW + timedelta(minutes=1),
}


def plan(cursor: datetime | None = None, since: datetime | None = None, until: datetime | None = None,
         size: timedelta = H, rescan: timedelta = timedelta(hours=24), initial: timedelta = timedelta(days=7)):
    return plan_windows(NOW, cursor, since, until, lookback=LOOKBACK, rescan=rescan, initial=initial, size=size)


def labels(windows: list[Window]) -> list[str]:
    """Labels of the blobs the windows list, each at most once (start inclusive, end exclusive)."""
    out = [name for name, t in BLOBS.items() for w in windows if w.start <= t < w.end]
    assert len(out) == len(set(out)), "windows overlap"
    return sorted(out)


def test_first_pass_lists_everything_the_api_still_keeps():
    p = plan()
    assert p.aged is None
    assert p.windows[0].start == oldest_listable(NOW, LOOKBACK) == datetime(2026, 3, 3, 12, 39, 57, tzinfo=UTC)
    assert p.windows[-1].end == NOW.replace(microsecond=0)
    assert labels(p.windows) == sorted(["day7_inside_edge", "day3_a", "day1_a", "late_1", "today_1", "today_2"])


def test_windows_are_contiguous_on_the_grid_and_never_exceed_24h():
    for size in (H, 6 * H, 24 * H, 48 * H):
        ws = plan(size=size).windows
        assert all(a.end == b.start for a, b in itertools.pairwise(ws))
        assert all(w.end - w.start <= min(size, MAX_WINDOW) for w in ws)
        assert all(w.end == slot_end(w, size) for w in ws[:-1])  # interior windows end on the grid
        assert all(w.start.microsecond == 0 and w.end.microsecond == 0 for w in ws)  # API takes seconds


def test_rescan_overlap_relists_recent_windows_for_late_blobs():
    cursor = NOW - 2 * H
    p = plan(cursor=cursor)
    assert p.windows[0].start == (cursor - timedelta(hours=24)).replace(microsecond=0)
    assert "late_1" in labels(p.windows)  # contentCreated before the cursor, still fetched if missing
    assert "day1_a" not in labels(p.windows)
    assert labels(plan(cursor=cursor, rescan=timedelta(0)).windows) == ["today_1", "today_2"]


def test_rescan_is_clamped_to_the_seven_day_edge_and_an_old_cursor_is_an_aged_span():
    cursor = NOW - timedelta(days=8)
    p = plan(cursor=cursor)
    floor = oldest_listable(NOW, LOOKBACK)
    assert p.windows[0].start == floor
    assert p.aged == Window(cursor, floor)  # blobs created there can never be listed again
    assert "day7_beyond_edge" not in labels(p.windows)


def test_a_cursor_inside_retention_has_no_aged_span():
    assert plan(cursor=NOW - timedelta(days=6)).aged is None


def test_initial_lookback_limits_a_first_pass():
    p = plan(initial=timedelta(hours=2))
    assert labels(p.windows) == ["today_1", "today_2"]


def test_since_and_until_bound_a_backfill_and_the_future_is_never_asked():
    p = plan(since=NOW - timedelta(days=30), until=NOW + timedelta(days=1))
    assert p.windows[0].start == oldest_listable(NOW, LOOKBACK)  # clamped, not refused
    assert p.aged is None  # an explicit --since beyond retention is not a broken promise
    assert "future_1" not in labels(p.windows)
    bounded = plan(since=NOW - timedelta(days=2), until=NOW - timedelta(days=1))
    assert labels(bounded.windows) == ["day1_a"]


def test_grid_is_stable_between_passes_so_ledgers_are_reused():
    first = grid_split(datetime(2026, 3, 10, 9, 17, tzinfo=UTC), datetime(2026, 3, 10, 12, 5, tzinfo=UTC), H)
    later = grid_split(datetime(2026, 3, 10, 10, 0, tzinfo=UTC), datetime(2026, 3, 10, 12, 50, tzinfo=UTC), H)
    assert [slot_end(w, H) for w in first[1:]] == [slot_end(w, H) for w in later]
    assert first[-1].end != later[-1].end and slot_end(first[-1], H) == slot_end(later[-1], H)


def test_request_span_moves_onto_the_server_clock_and_respects_the_floor():
    w = Window(datetime(2026, 3, 3, 12, 0, tzinfo=UTC), datetime(2026, 3, 3, 13, 0, tzinfo=UTC))
    floor = datetime(2026, 3, 3, 12, 10, tzinfo=UTC)
    assert request_span(w, timedelta(0), floor) == (floor, w.end)
    shift = timedelta(minutes=30)
    assert request_span(w, shift, floor) == (w.start + shift, w.end + shift)


def test_an_old_cursor_is_an_aged_span_whatever_since_says():
    cursor = NOW - timedelta(days=8)
    floor = oldest_listable(NOW, LOOKBACK)
    p = plan(cursor=cursor, since=NOW - timedelta(days=30))
    assert p.aged == Window(cursor, floor)  # the cursor promised it; an explicit --since does not excuse it
    assert p.windows[0].start == floor and p.windows[0].covered_from == cursor  # the cursor may cross the gap
    later = plan(cursor=cursor, since=NOW - timedelta(days=2))
    assert later.aged == Window(cursor, floor)
    assert later.windows[0].covered_from == later.windows[0].start > floor  # [floor, since) is not collected
