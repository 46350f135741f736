"""Is a stream silent? The last settled hour against what the archive says the stream usually holds.

The shape of the September 2024 loss: collection works, the API answers, and far fewer records
arrive than usual. The check compares the hour's count with a baseline and a count model:

* Baseline. Activity follows the working day, so the first choice is the **same hour on earlier
  days** (the median over the previous 7 days, at least 3 of them known). Until there are 3 such
  days (a new install whose history is short), the **recent hours** are used: the 24 hours before,
  at least 12 of them known, taking a low quantile (the 10th percentile) so that a quiet night
  after a busy day is not called silent. An hour before the first stored record of the stream is
  not known (it says nothing about volume) and is left out of either baseline.
* Count model. Records per hour are modelled as Poisson with the baseline as mean. The hour is
  silent when it holds less than `silence_ratio` of the baseline **and** so few records would
  happen by chance less than once in a thousand hours (`P(X <= seen) < 0.001`). A stream at 14
  records an hour that drops to 0 is silent (P = 8e-7); one at 2 an hour that has a quiet hour is
  not (P = 0.14): too few to tell, rather than a false alarm every night.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent.archive.layout import Partition
from agent.streams import spec

ALPHA = 1e-3
DAYS, MIN_DAYS = 7, 3
RECENT_HOURS, MIN_RECENT_HOURS = 24, 12
RECENT_QUANTILE = 0.1


@dataclass(frozen=True)
class Verdict:
    hour: datetime  # the hour checked
    seen: int
    expected: float | None  # the baseline's mean records per hour; None: not enough history
    basis: str  # how the baseline was made, for the alert and the docs
    silent: bool
    chance: float | None = None  # P(X <= seen) under the baseline

    def describe(self) -> str:
        if self.expected is None:
            return f"{self.seen} records in the hour from {self.hour:%Y-%m-%d %H:00Z}; {self.basis}"
        chance = f"; chance of so few: {self.chance:.1g}" if self.chance is not None else ""
        return (f"{self.seen} records in the hour from {self.hour:%Y-%m-%d %H:00Z}, expected about "
                f"{self.expected:.0f} ({self.basis}){chance}")


def poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean), summed in log space (no overflow at large means)."""
    if mean <= 0:
        return 1.0
    log_mean = math.log(mean)
    return min(1.0, sum(math.exp(i * log_mean - mean - math.lgamma(i + 1)) for i in range(k + 1)))


def baseline(recent: list[int], same_hour: list[int]) -> tuple[float | None, str]:
    """(expected records per hour, basis) from the known hours, or (None, why) when too few."""
    if len(same_hour) >= MIN_DAYS:
        return float(statistics.median(same_hour)), f"median of the same hour on {len(same_hour)} earlier days"
    if len(recent) >= MIN_RECENT_HOURS:
        low = sorted(recent)[int(RECENT_QUANTILE * (len(recent) - 1))]
        return float(low), f"10th percentile of the {len(recent)} hours before"
    return None, (f"not enough history yet (needs {MIN_DAYS} earlier days or {MIN_RECENT_HOURS} hours "
                  "of stored records)")


def judge(hour: datetime, seen: int, recent: list[int], same_hour: list[int], ratio: float) -> Verdict:
    expected, basis = baseline(recent, same_hour)
    if expected is None:
        return Verdict(hour, seen, None, basis, False)
    chance = poisson_cdf(seen, expected) if seen < ratio * expected else None
    return Verdict(hour, seen, expected, basis, chance is not None and chance < ALPHA, chance)


async def check(archive: Any, tenant: str, stream: str, hour: datetime, ratio: float) -> Verdict:
    """The verdict on `hour` (a settled hour) from the archive's per-segment counts."""

    async def count(h: datetime) -> int:
        return sum(s.count for s in await archive.segments(Partition(tenant, stream, h)))

    recent_hours = [hour - timedelta(hours=n) for n in range(1, RECENT_HOURS + 1)]
    day_hours = [hour - timedelta(days=d) for d in range(1, DAYS + 1)]
    hours = sorted(set(recent_hours + day_hours))
    counts = dict(zip(hours, await asyncio.gather(*(count(h) for h in hours)), strict=True))  # S3: one LIST each
    with_data = [h for h, n in counts.items() if n]
    if not with_data:
        return judge(hour, await count(hour), [], [], ratio)
    first = min(with_data)  # hours before the first stored record say nothing about volume
    return judge(hour, await count(hour), [counts[h] for h in recent_hours if h >= first],
                 [counts[h] for h in day_hours if h >= first], ratio)


# A stream found silent is checked again (one store listing per hour of its baseline, ~30) as soon as
# this service stores records for it or its settled hour moves; otherwise every SILENT_RECHECK
# seconds, for records another process (`agent collect --since`, a re-collection) added. Checking
# every minute cost a service with many quiet streams about 2 % of a core while idle.
SILENT_RECHECK = 900.0


# How long after an hour ends its volume is taken as settled: sign-ins arrive minutes late, while
# Management Activity content typically becomes available 1-2 hours after the event (longer at times).
def settled_hour(stream: str, now: datetime) -> datetime:
    """The start of the last hour that ended at least the stream's settle time before `now`."""
    return (now - spec(stream).silence_settle).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


async def is_silent(archive: Any, tenant: str, stream: str, now: datetime, ratio: float) -> bool:
    """True when the last settled hour is silent."""
    return (await check(archive, tenant, stream, settled_hour(stream, now), ratio)).silent
