"""`json_exact`: every JSON text RFC 8259 allows comes back parsed-equal, what is not JSON is refused
with `JsonError` (and says whether the text was cut short), and nothing is reshaped on the way."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import json_exact
from agent.archive import codec
from agent.json_exact import JsonError

EXAMPLES = settings(max_examples=150, deadline=None)

# Strings with lone surrogates, integers well past 64 bits, every finite float.
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=False, allow_infinity=False),
                    st.text(alphabet=st.characters(blacklist_categories=()), max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)


def nest(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"k": leaf}
    return leaf


@pytest.mark.parametrize(("text", "expected"), [
    (b'"\\ud800"', "\ud800"),
    (b'{"a": "x\\udfffy"}', {"a": "x\udfffy"}),
    (b"18446744073709551616", 2**64),
    (b"-9223372036854775809", -(2**63) - 1),
    (b"1e400", Decimal("1e400")),
    (b"[-1E+400, 1.5]", [Decimal("-1e400"), 1.5]),
    (b"7" * 5000, Decimal("7" * 5000)),
    (b'{"id": "' + b"7" * 5000 + b'"}', {"id": "7" * 5000}),  # a digit run inside a string
])
def test_values_orjson_refuses_or_reshapes_are_kept(text: bytes, expected: Any) -> None:
    value = json_exact.loads(text)
    assert value == expected and type(value) is type(expected)
    assert json_exact.loads(json_exact.dumps(value)) == expected


@pytest.mark.parametrize("text", [
    b"[ 18446744073709551616 ]", b'{"a":\t-9223372036854775809}', b"\n18446744073709551616\n",
    b"[1,18446744073709551616]", b'{"a":18446744073709551616,"b":1}', b'{"a":[99999999999999999999]}',
    b"9223372036854775808",  # 19 digits, 2**63: kept an int whatever orjson would make of it
])
def test_wide_integers_are_found_wherever_json_puts_them(text: bytes) -> None:
    assert json_exact.loads(text) == json.loads(text)
    assert "float" not in repr(type(json_exact.loads(text)))
    assert json_exact.dumps(json_exact.loads(text)) == json_exact.dumps(json.loads(text))


def test_digit_runs_inside_strings_stay_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """An all-digit string (a token identifier, a phone number) is not a wide integer: the page is
    parsed once by orjson, not again by the exact parser (which made a third of collection's cost)."""
    page = b'{"value":[' + b",".join(b'{"id":"%d","t":"%s","u":"x-%s"}' % (i, b"7" * (19 + i), b"9" * 30)
                                     for i in range(50)) + b"]}"

    def slow(data: bytes | str) -> object:
        raise AssertionError("the exact parser ran on a page without wide integers")

    monkeypatch.setattr(json_exact, "_loads_exact", slow)
    assert json_exact.loads(page) == json.loads(page)


@pytest.mark.parametrize("depth", [300, 1100, 20_000])
def test_nesting_depth_is_limited_only_by_memory(depth: int) -> None:
    value = nest(depth, 1)
    text = json_exact.dumps(value)
    assert text.count(b"[") + text.count(b"{") == depth
    assert json_exact.dumps(json_exact.loads(text)) == text


def test_a_segment_round_trips_hostile_records() -> None:
    records = [{"id": "1", "s": "\ud800", "n": 2**70, "f": Decimal("1e400"), "d": nest(2000, None)}]
    assert json_exact.dumps(list(codec.decode(codec.encode(records)))) == json_exact.dumps(records)


@EXAMPLES
@given(values)
def test_round_trip_and_agreement_with_the_stdlib(value: Any) -> None:
    text = json_exact.dumps(value)
    assert json_exact.loads(text) == value
    assert json.loads(text) == value  # what we write, the stdlib reads the same
    for other in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert json_exact.loads(other) == value


@EXAMPLES
@given(values.filter(lambda v: isinstance(v, dict | list) and v != {} and v != []), st.data())
def test_a_cut_document_is_incomplete_not_invalid(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    with pytest.raises(JsonError) as err:
        json_exact.loads(text[:cut])
    assert err.value.incomplete


@EXAMPLES
@given(st.binary(max_size=80))
def test_arbitrary_bytes_are_json_or_a_json_error(data: bytes) -> None:
    with contextlib.suppress(JsonError):  # anything else escaping is the failure
        json_exact.loads(data)


@pytest.mark.parametrize("text", [b'{"a": NaN}', b"[1,]", b'{"a" 1}', b'{"a": "\x01"}', b"[01]", b'{"a": 1} x',
                                  b"<html>", b'{"a": \xff}', b"Infinity", b"[-]"])
def test_invalid_json_is_refused_where_it_stands(text: bytes) -> None:
    with pytest.raises(JsonError) as err:
        json_exact.loads(text)
    assert not err.value.incomplete


def test_backfill_bodies_carry_hostile_records_unchanged() -> None:
    """Backfill reads such records from the archive and must send them whole to any SIEM."""
    from datetime import UTC, datetime

    from agent.siem.base import Target
    from agent.siem.elastic.rows import document
    from agent.siem.sentinel.rows import row
    from agent.siem.splunk.rows import event

    rec = {"id": "x", "activityDateTime": "2026-03-10T10:00:00Z", "s": "\ud800", "n": 2**70,
           "f": Decimal("1e400"), "d": nest(600, None)}
    now = datetime(2026, 3, 10, tzinfo=UTC)
    target = Target("AuditLogs", "Id", "TimeGenerated")
    stream = "graph.directory_audits"
    for body in (row(target, "t", stream, rec, now), event(target, "t", stream, rec, now)):
        sent = json_exact.loads(json_exact.dumps(body))
        assert sent.get("RawRecord", sent.get("event")) == rec
    doc = json_exact.loads(json_exact.dumps(document(target, "t", stream, rec, now)))
    assert json_exact.loads(doc["event"]["original"]) == rec


@pytest.mark.parametrize(("text", "members"), [
    (b'[1, {"a": [1,2]}, "x,]\\"", NaN]', [b"1", b' {"a": [1,2]}', b' "x,]\\""', b" NaN"]),
    (b"[]", []), (b" [ ] ", []), (b'{"a": 1, "b": [1, 2]}', [b'"a": 1', b' "b": [1, 2]']),
    (b'[{"s": "\xff}"}, 2]', [b'{"s": "\xff}"}', b" 2"]),
])
def test_members_are_split_without_being_parsed(text: bytes, members: list[bytes]) -> None:
    assert json_exact.split_members(text) == members


@pytest.mark.parametrize("text", [b"[1, 2", b"[1]]", b"1", b"", b'["open]'])
def test_members_of_unbalanced_text_are_not_guessed(text: bytes) -> None:
    assert json_exact.split_members(text) is None
