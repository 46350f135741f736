from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.archive import codec
from agent.archive.layout import Partition, parse_segment_key


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02T03:04:05.1234567Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    ("2018-11-06T18:48:12.94725647Z", datetime(2018, 11, 6, 18, 48, 12, 947256, tzinfo=UTC)),
    ("2015-06-29T20:03:19", datetime(2015, 6, 29, 20, 3, 19, tzinfo=UTC)),  # Management API: no zone
    ("2023-01-01T04:45:48-05:00", datetime(2023, 1, 1, 9, 45, 48, tzinfo=UTC)),
])
def test_parse_time_formats_microsoft_uses(text: str, expected: datetime) -> None:
    assert codec.parse_time(text) == expected


@pytest.mark.parametrize("bad", ["", None, 12, "2023-10-10T17:08:65", "yesterday"])
def test_parse_time_rejects_garbage(bad: object) -> None:
    with pytest.raises(ValueError):
        codec.parse_time(bad)


@pytest.mark.parametrize(("dt", "text"), [
    (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z"),  # .NET's default time: four-digit year
    (datetime(2024, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "2024-01-02T03:04:05.000600Z"),
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5))), "2024-01-02T08:04:05Z"),
    (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999999Z"),
])
def test_format_time_writes_rfc3339_utc(dt: datetime, text: str) -> None:
    assert codec.format_time(dt) == text


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(timedelta(hours=-11))])))
def test_format_time_is_the_text_sidecars_always_held(dt: datetime) -> None:
    """Sidecars, manifests and checkpoints written before keep their exact text (the old strftime form)."""
    utc = dt.astimezone(UTC)
    old = f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "-%m-%dT%H:%M:%SZ")
    assert codec.format_time(dt) == old
    assert codec.parse_time(old) == dt


def test_encode_decode_round_trip_keeps_records_parsed_equal() -> None:
    recs = [{"id": "a", "b": {"c": [1, 2.5, None, True]}, "ü": "\u2013 trailing "}, {"Id": "x"}]
    assert list(codec.decode(codec.encode(recs))) == recs


def test_partition_keys_follow_contract_layout() -> None:
    p = Partition.of("t1", "graph.directory_audits", datetime(2026, 3, 4, 5, 59, tzinfo=UTC))
    key = p.segment_key("seg1")
    assert key == "tenant=t1/stream=graph.directory_audits/date=2026-03-04/hour=05/seg1.ndjson.zst"
    assert parse_segment_key(key) == (p, "seg1")
    assert parse_segment_key("_meta/index/" + key) is None
