"""Judging one hour of a sibling pair: the statistical rules, pure and unit-tested.

Counts are compared against a relation learned from the surrounding hours (a median, robust to a gap
covering under half of them), and a shortfall is called only beyond normal variation, so a quiet hour
is never a false alarm and a whole lost busy hour always stands out (docs/triangulation.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

__all__ = ["id_verdict", "judge_counts", "learn_ratio", "significant", "stand_out", "usual_share"]


def learn_ratio(counts: Iterable[tuple[int, int]], minimum_hours: int = 6) -> float | None:
    """The median of b/a over hours with activity on a: robust to a gap covering under half of them."""
    ratios = [b / a for a, b in counts if a > 0]
    return statistics.median(ratios) if len(ratios) >= minimum_hours else None


def significant(deficit: float, expected: float) -> bool:
    """A shortfall beyond normal variation: at least 3 records, a quarter of the expected count, and
    3.5 Poisson sigmas (a one-sided false alarm about once in 4,000 hours even where the subset rule
    makes counts binomial, which varies less than Poisson). A whole lost hour needs about 15 records
    an hour to stand out; quieter hours are judged "ok" unless the mapping is id-level."""
    return deficit >= 3 and deficit >= 0.25 * expected and deficit > 3.5 * math.sqrt(expected + 1)


def judge_counts(a: int, b: int, ratio: float | None) -> tuple[str, float | None, int, int]:
    """(verdict, expected_b, missing in a, missing in b) of one hour compared by count."""
    if ratio is None:
        return ("ok" if a == b == 0 else "no_baseline"), None, 0, 0
    expected_b = ratio * a
    if significant(expected_b - b, expected_b):
        return "missing_in_b", expected_b, 0, round(expected_b - b)
    # Both directions are tested in b's units, where the null variance is known (at most expected_b):
    # scaling b up by 1/ratio would also scale its noise and cry wolf under a small subset ratio.
    excess = b - expected_b
    if ratio > 0 and excess >= 0.25 * b and significant(excess, expected_b):
        return "missing_in_a", expected_b, round(excess / ratio), 0
    return "ok", expected_b, 0, 0


def usual_share(hours: Iterable[tuple[int, int]], minimum_hours: int = 6) -> float:
    """Median share of a side's records that have no sibling, over (records, unjoined) per settled hour.

    0 where the mapping is exact (the evidence so far); if it is not (say some directory services
    never reach the audit log), the usual share is learned so that only an hour that stands out
    is called a gap.
    """
    shares = [lonely / n for n, lonely in hours if n > 0]
    return statistics.median(shares) if len(shares) >= minimum_hours else 0.0


def stand_out(lonely: int, records: int, usual: float) -> int:
    """How many of an hour's unjoined records are beyond the usual share (all of them if that is 0)."""
    if usual == 0:
        return lonely
    expected = usual * records
    return round(lonely - expected) if significant(lonely - expected, expected) else 0


def id_verdict(missing_a: int, missing_b: int) -> str:
    if missing_a and missing_b:
        return "missing_in_both"
    return "missing_in_a" if missing_a else "missing_in_b" if missing_b else "ok"
