"""What a scheduled loop of `agent run` gets from the supervisor: when to stop and how to wait.

The loops (reconcile, triangulation, notices, collection, stall checks) live beside what they
check; they receive a `Pace` and the few resources they use as parameters, never the service.
Every wait is a plain cancellable sleep that also ends when the service stops, so a shutdown
never waits out a reconcile interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol


class TaskFailed(Protocol):
    """**Protocol:** report an error a loop did not expect (logged with its trace, alerted at most
    once an hour per task); never raises, so the loop goes on."""

    async def __call__(self, task: str, exc: BaseException, *, logged: bool = False) -> None: ...


@dataclass(frozen=True)
class Pace:
    """The service's stop signal and first-pass signal, and how its loops sleep."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    first_pass: asyncio.Event = field(default_factory=asyncio.Event)  # every stream finished one pass
    # how a loop waits between rounds; tests replace it (e.g. to run one round and stop)
    sleeper: Callable[[float], Awaitable[None]] | None = None

    @property
    def running(self) -> bool:
        return not self.stop.is_set()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less when the service stops meanwhile."""
        if self.sleeper is not None:
            await self.sleeper(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def after_first_pass(self, within: float) -> None:
        """Until every stream finished one pass (or `within` seconds): a reconcile of a half-filled
        archive is noise."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.first_pass.wait(), timeout=within)
