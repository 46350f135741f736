"""The Source protocol and the time-window arithmetic every source shares.

Window functions are pure and take `now` as an argument, so tests pin the clock instead of
sleeping (the Beats o365audit pattern).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from agent.checkpoint import Cursor
from agent.codec import Record, format_time


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open interval [start, end) on the source's own clock (event time or blob time)."""

    start: datetime
    end: datetime
    # Where a span the source records as a gap (aged past the API's retention) begins, when such a
    # span ends at this window's start: the cursor may cross the gap, never an unrecorded hole.
    gap_from: datetime | None = field(default=None, compare=False)

    @property
    def covered_from(self) -> datetime:
        """The earliest instant this window accounts for once done: collected, or a recorded gap."""
        return self.gap_from if self.gap_from is not None and self.gap_from < self.start else self.start

    def __str__(self) -> str:
        return f"{format_time(self.start)}/{format_time(self.end)}"


def split(start: datetime, end: datetime, size: timedelta) -> list[Window]:
    """Consecutive windows of at most `size` covering [start, end), oldest first."""
    out = []
    t = start
    while t < end:
        out.append(Window(t, min(t + size, end)))
        t = out[-1].end
    return out


def floor_second(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


class Source(Protocol):
    """**Protocol:** one API of one tenant, for the streams it serves."""

    def plan(self, stream: str, cursor: Cursor | None, since: datetime | None, until: datetime | None,
             now: datetime) -> Sequence[Window]:
        """The windows one pass must fetch, oldest first."""
        ...

    def batches(self, stream: str, window: Window) -> AsyncIterator[Sequence[Record]]:
        """Records of a window, in batches; raises AgentError if the window cannot be completed."""
        ...

    async def window_done(self, stream: str, window: Window) -> tuple[datetime, dict[str, Any]]:
        """After the window's records are durable: the cursor position (and state) it justifies."""
        ...
