"""Pure reconciliation arithmetic: buckets, count comparison, id set differences, gap merging.

No I/O here, so every rule that decides "missing" is unit-tested with plain values. Times are
integer microseconds since the Unix epoch: exact, cheap to bin, and free of timezone questions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

US = 1_000_000


def floor_to(us: int, size_us: int) -> int:
    """Start of the epoch-aligned bucket of `size_us` holding `us` (what KQL bin() and date_histogram do)."""
    return us - us % size_us


def bucket_starts(start_us: int, end_us: int, size_us: int) -> list[int]:
    """Starts of the buckets that intersect [start_us, end_us)."""
    out, t = [], floor_to(start_us, size_us)
    while t < end_us:
        out.append(t)
        t += size_us
    return out


def needs_ids(agent: int, rows: int, distinct: int) -> bool:
    """A bucket is settled by counts alone only if the SIEM has exactly our records, once each.

    `distinct` catches a duplicate hiding a loss (rows equal, one id twice, one id absent). An
    exact swap (the SIEM lacks one of ours and has one we lack) is invisible to counts; `full`
    reconciliation fetches ids for every bucket to rule that out.
    """
    return rows != agent or distinct != agent


def sub_bucket(size_us: int, rows: int, limit: int) -> int | None:
    """A smaller bucket size dividing `size_us` so each piece should hold < limit/2 rows; None at 1 s."""
    if size_us <= US:
        return None
    seconds = size_us // US
    want = max(2, -(-rows * 2 // max(1, limit)))  # ceil(2 * rows / limit): aim at half the limit
    for parts in range(want, seconds + 1):
        if seconds % parts == 0:
            return size_us // parts
    return US


@dataclass(slots=True)
class BucketDiff:
    """What one bucket's id comparison found."""

    missing_in_siem: set[str] = field(default_factory=set)
    missing_in_agent: set[str] = field(default_factory=set)
    duplicates: dict[str, int] = field(default_factory=dict)  # id -> rows in the SIEM (>1)


def diff_ids(agent: Iterable[str], siem: Counter[str]) -> BucketDiff:
    """Compare the archive's ids of a bucket with the SIEM's id rows of the same bucket."""
    ours = set(agent)
    theirs = set(siem)
    return BucketDiff(missing_in_siem=ours - theirs, missing_in_agent=theirs - ours,
                      duplicates={i: n for i, n in siem.items() if n > 1})


@dataclass(frozen=True, slots=True)
class Gap:
    """[start, end) in microseconds, and how many records of ours the SIEM lacks in it."""

    start: int
    end: int
    missing: int


def merge_gaps(missing_per_bucket: Mapping[int, int], size_us: int) -> list[Gap]:
    """Adjacent buckets with missing records become one interval; empty buckets split intervals."""
    out: list[Gap] = []
    for start in sorted(b for b, n in missing_per_bucket.items() if n > 0):
        n = missing_per_bucket[start]
        if out and out[-1].end == start:
            last = out[-1]
            out[-1] = Gap(last.start, start + size_us, last.missing + n)
        else:
            out.append(Gap(start, start + size_us, n))
    return out


def cancel_moves(missing_in_siem: set[str], missing_in_agent: set[str]) -> set[str]:
    """Ids reported on both sides were seen in both, only in different buckets (clock skew between
    the record's event time and the SIEM's time column); they are present, not missing."""
    moved = missing_in_siem & missing_in_agent
    missing_in_siem -= moved
    missing_in_agent -= moved
    return moved
