from __future__ import annotations

from datetime import UTC, datetime

import pytest

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


def test_encode_decode_round_trip_keeps_records_parsed_equal() -> None:
    recs = [{"id": "a", "b": {"c": [1, 2.5, None, True]}, "ü": "\u2013 trailing "}, {"Id": "x"}]
    assert list(codec.decode(codec.encode(recs))) == recs


def test_partition_keys_follow_contract_layout() -> None:
    p = Partition.of("t1", "graph.directory_audits", datetime(2026, 3, 4, 5, 59, tzinfo=UTC))
    key = p.segment_key("seg1")
    assert key == "tenant=t1/stream=graph.directory_audits/date=2026-03-04/hour=05/seg1.ndjson.zst"
    assert parse_segment_key(key) == (p, "seg1")
    assert parse_segment_key("_meta/index/" + key) is None
