"""Pure reconciliation arithmetic: buckets, count rules, id differences, gap merging."""

from __future__ import annotations

from collections import Counter

from agent.reconcile.diff import (
    US,
    Gap,
    bucket_starts,
    cancel_moves,
    diff_ids,
    floor_to,
    merge_gaps,
    needs_ids,
    sub_bucket,
)

H = 3600 * US


def test_buckets_are_epoch_aligned_and_cover_the_window() -> None:
    assert floor_to(5 * H + 17, H) == 5 * H
    assert bucket_starts(5 * H + 1, 7 * H, H) == [5 * H, 6 * H]
    assert bucket_starts(5 * H, 5 * H, H) == []


def test_counts_settle_a_bucket_only_when_rows_and_distinct_ids_match() -> None:
    assert not needs_ids(10, 10, 10)
    assert needs_ids(10, 9, 9)  # loss
    assert needs_ids(10, 11, 10)  # a duplicate
    assert needs_ids(10, 10, 9)  # a duplicate hiding a loss


def test_sub_bucket_divides_the_parent_and_fits_the_limit() -> None:
    size = sub_bucket(H, rows=1_000_000, limit=500_000)
    assert size is not None and H % size == 0 and size <= H // 4
    assert sub_bucket(H, 100, 40) == H // 5  # ceil(2 * 100 / 40) = 5 pieces
    assert sub_bucket(US, 10**9, 10) is None  # one second cannot be split


def test_diff_ids_finds_both_sides_and_duplicates() -> None:
    d = diff_ids({"a", "b", "c"}, Counter({"b": 1, "c": 2, "x": 1}))
    assert d.missing_in_siem == {"a"}
    assert d.missing_in_agent == {"x"}
    assert d.duplicates == {"c": 2}


def test_merge_gaps_joins_adjacent_buckets_only() -> None:
    gaps = merge_gaps({0: 2, H: 3, 3 * H: 1, 4 * H: 0}, H)
    assert gaps == [Gap(0, 2 * H, 5), Gap(3 * H, 4 * H, 1)]
    assert merge_gaps({}, H) == []


def test_an_id_seen_on_both_sides_in_different_buckets_is_present() -> None:
    siem_missing, agent_missing = {"a", "moved"}, {"moved", "z"}
    assert cancel_moves(siem_missing, agent_missing) == {"moved"}
    assert siem_missing == {"a"} and agent_missing == {"z"}
