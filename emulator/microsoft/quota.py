"""Documented request quotas as sliding windows: Graph reports per (app, tenant) and per app across
tenants per 10 s, Management Activity per tenant per minute (protocols.md §1.5, §2.5;
learn.microsoft.com/graph/throttling-limits).

Refused requests are not counted, so a client that waits out `Retry-After` gets through.
"""

from __future__ import annotations

from collections import deque

from emulator.world.clock import TICKS_PER_SECOND


class SlidingWindow:
    """At most `limit` admitted requests per key within any `window` ticks; limit 0 = unlimited."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = round(window_seconds * TICKS_PER_SECOND)
        self._seen: dict[str, deque[int]] = {}

    def admit(self, key: str, now: int) -> float | None:
        """None when admitted (and counted); else the seconds until a slot frees up."""
        if self.limit <= 0:
            return None
        q = self._seen.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) < self.limit:
            q.append(now)
            return None
        return (q[0] + self.window - now) / TICKS_PER_SECOND

    def forget(self, key: str) -> None:
        """Un-count the last admitted request of `key` (another limit refused it after all)."""
        q = self._seen.get(key)
        if q:
            q.pop()
