"""Fuzz the parsers that meet Microsoft's answers: Graph `classify`, the Management listing, blob,
subscription and error parsers, `parse_time` and `parse_retry_after`. Only the agent's own errors
(or the documented ValueError of parse_time) may come out, and never with the secret in them."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.archive.codec import parse_time
from agent.errors import AgentError
from agent.http import Response, parse_retry_after
from agent.logs import register_secret
from agent.sources.graph import source as graph
from agent.sources.management_activity import api as m
from tests.fuzz.strategies import SECRET, bodies, headers, json_values, statuses

register_secret(SECRET)
URL = "https://graph.test/v1.0/auditLogs/signIns?$skiptoken=" + SECRET
FUZZ = settings(max_examples=200, deadline=None)


def clean(exc: BaseException) -> None:
    assert isinstance(exc, AgentError), f"{type(exc).__name__}: {exc}"
    assert SECRET not in str(exc)


@FUZZ
@given(status=statuses, body=bodies, hdrs=headers)
def test_graph_classify(status: int, body: bytes, hdrs: dict[str, str]) -> None:
    try:
        records, nxt = graph.classify(Response(status, hdrs, body, URL), "graph.signins.interactive")
    except Exception as exc:
        clean(exc)
        return
    assert status == 200 and all(isinstance(r, dict) for r in records)
    assert nxt is None or isinstance(nxt, str)


@FUZZ
@given(status=statuses, body=bodies, hdrs=headers, wait=st.one_of(st.none(), st.floats(0, 5)))
def test_management_classify(status: int, body: bytes, hdrs: dict[str, str], wait: float | None) -> None:
    resp = Response(status, hdrs, body, URL)
    try:
        m.classify(resp, "o365.exchange content", throttle_wait=wait)
    except Exception as exc:
        clean(exc)
    m.next_page(resp)
    m.server_date(resp)
    code, message = m.error_of(body)
    assert isinstance(code, str) and isinstance(message, str)


entry = st.fixed_dictionaries({}, optional={
    "contentType": json_values, "contentId": st.one_of(st.text(max_size=20), json_values),
    "contentUri": st.one_of(st.just("https://127.0.0.1/x"), st.text(max_size=20), json_values),
    "contentCreated": st.one_of(st.just("2026-03-10T10:00:00.000Z"), json_values),
    "contentExpiration": st.one_of(st.just("2026-03-17T10:00:00.000Z"), json_values)})


@FUZZ
@example([{"contentId": "a", "contentUri": "https://127.0.0.1/x", "contentCreated": "9999-12-31T23:59:59-01:00"}])
@example([{"contentId": "a", "contentUri": "https://127.0.0.1/x", "contentCreated": "9999-12-31T23:59:59Z"}])
@given(doc=st.one_of(json_values, st.lists(st.one_of(entry, json_values), max_size=5)))
def test_management_listing_blob_and_subscriptions(doc: Any) -> None:
    resp = Response(200, {}, b"", URL)
    for parse in (m.listing_page, m.blob_records, m.subscription_states):
        try:
            parse(resp, doc)
        except Exception as exc:
            clean(exc)


@FUZZ
@example("9999-12-31T23:59:59-01:00")
@example("0001-01-01T00:00:00+01:00")
@example("2026-03-10T10:00:00.123456789Z")
@given(value=st.one_of(json_values, st.text(max_size=40), st.from_regex(
    r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:\d{2})?", fullmatch=True)))
def test_parse_time_raises_only_value_error(value: Any) -> None:
    try:
        dt = parse_time(value)
    except ValueError:
        return
    assert dt.tzinfo is not None and dt.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@FUZZ
@given(value=st.one_of(st.none(), st.text(max_size=40), header_values_strategy := st.sampled_from(
    ["1e400", "-1", "nan", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT"])))
def test_parse_retry_after_never_raises(value: str | None) -> None:
    wait = parse_retry_after(value)
    assert wait is None or wait >= 0
