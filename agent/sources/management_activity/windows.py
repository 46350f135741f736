"""Listing windows of the Management Activity API: pure arithmetic on `contentCreated`, `now` injected.

Windows sit on a fixed grid (multiples of `size` since the Unix epoch) so that re-listing the same
hours on later passes produces the same windows, and so the same ledger objects, instead of a new
set of overlapping ones every poll. The API's own rules: at most 24 h per query, start no older
than 7 days (we stay `lookback` behind it), start inclusive, end exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.sources.base import Window, floor_second

MAX_WINDOW = timedelta(hours=24)  # AF20030 beyond this; longer spans "may work" with partial results
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ceil_second(dt: datetime) -> datetime:
    return dt if dt.microsecond == 0 else floor_second(dt) + timedelta(seconds=1)


def grid_floor(t: datetime, size: timedelta) -> datetime:
    return _EPOCH + ((t - _EPOCH) // size) * size


def grid_split(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """Windows covering [start, end), cut at grid boundaries, each at most `size` (≤ 24 h) long."""
    size = min(size, MAX_WINDOW)
    out: list[Window] = []
    t = start
    while t < end:
        nxt = min(grid_floor(t, size) + size, end)
        out.append(Window(t, nxt))
        t = nxt
    return out


def slot_end(window: Window, size: timedelta) -> datetime:
    """The grid boundary that closes the window's slot; stable while the last window grows with `now`."""
    return grid_floor(window.start, min(size, MAX_WINDOW)) + min(size, MAX_WINDOW)


def oldest_listable(now: datetime, lookback: timedelta) -> datetime:
    """The oldest start time we send: `lookback` (167h55m) absorbs request delay before the 7-day edge."""
    return ceil_second(now - lookback)


@dataclass(frozen=True, slots=True)
class Plan:
    windows: list[Window] = field(default_factory=list)
    aged: Window | None = None  # contentCreated span after the cursor that can no longer be listed


def plan_windows(now: datetime, cursor: datetime | None, since: datetime | None, until: datetime | None, *,
                 lookback: timedelta, rescan: timedelta, initial: timedelta, size: timedelta) -> Plan:
    """The windows of one pass, oldest first.

    With a cursor, the pass starts `rescan` behind it: blobs can be listed late, and already archived
    ones are skipped by contentId. Everything is clamped to what the API still lists. If the cursor
    itself is older than that, the span in between can never be listed again: that is `aged`.
    """
    floor = oldest_listable(now, lookback)
    if since is not None:
        start = since
    elif cursor is not None:
        start = cursor - rescan
    else:
        start = now - min(initial, lookback)
    # Whatever `since` says: a span the cursor promised that can no longer be listed is a gap.
    aged = Window(cursor, floor) if cursor is not None and cursor < floor else None
    start = max(floor_second(start), floor)
    end = floor_second(min(until or now, now))
    windows = grid_split(start, end, size)
    if aged is not None and windows and windows[0].start == floor:
        # the first window starts where the recorded gap ends: the cursor may cross both
        windows[0] = Window(windows[0].start, windows[0].end, gap_from=aged.start)
    return Plan(windows, aged)


def request_span(window: Window, shift: timedelta, floor: datetime) -> tuple[datetime, datetime]:
    """The (startTime, endTime) actually sent for a window: moved onto the server's clock by `shift`
    (learned after the window was planned), and never older than `floor`."""
    return max(window.start + shift, floor), window.end + shift
