"""Fuzz the SIEM response parsers through the real adapters (Log Analytics tables and error objects,
Splunk export NDJSON with preview/lastrow rows, Elasticsearch search/PIT answers): whatever the SIEM
sends, the adapter returns an answer or raises the agent's own error, never echoing the credential."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.errors import AgentError
from agent.http import Response
from agent.logs import register_secret
from agent.siem.base import Siem
from agent.siem.elastic.reader import ElasticSiem
from agent.siem.sentinel.reader import SentinelSiem
from agent.siem.splunk.reader import SplunkSiem
from agent.sources.base import Window
from tests.fuzz.strategies import SECRET, bodies, json_values, statuses
from tests.siem.fixtures import TENANT
from tests.siem.harness import siem_config

register_secret(SECRET)
FUZZ = settings(max_examples=200, deadline=None)
WINDOW = Window(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 1, 6, tzinfo=UTC))
STREAM = "o365.exchange"
GUID = "0b0c0d0e-1111-4222-8333-944455556666"


class Canned:
    """An HttpClient whose every answer is the next of `answers` (the last one repeats)."""

    def __init__(self, answers: list[tuple[int, bytes]]) -> None:
        self.answers = answers

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, data: bytes | None = None,
                      tag: tuple[str, str] | None = None) -> Response:
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Response(status, {"Retry-After": "0"}, body, url)


async def _static() -> str:
    return SECRET


def adapter(kind: str, answers: list[tuple[int, bytes]]) -> Siem:
    http: Any = Canned(answers)
    cfg = siem_config(kind, "https://siem.test", max_attempts=1)
    if kind == "sentinel":
        return SentinelSiem(cfg, http, _static)
    if kind == "splunk":
        return SplunkSiem(cfg, http, _static)
    return ElasticSiem(cfg, http, _static)


async def exercise(siem: Siem) -> None:
    calls: list[Callable[[], Any]] = [
        siem.check,
        lambda: siem.count_buckets(TENANT, STREAM, WINDOW, timedelta(hours=1)),
        lambda: _drain(siem),
        lambda: siem.present(TENANT, STREAM, [GUID], WINDOW),
    ]
    for call in calls:
        try:
            await call()
        except Exception as exc:
            assert isinstance(exc, AgentError), f"{type(exc).__name__}: {exc}"
            assert SECRET not in str(exc)
    await siem.aclose()


async def _drain(siem: Siem) -> list[str]:
    return [i async for i in siem.ids(TENANT, STREAM, WINDOW)]


def run(kind: str, answers: list[tuple[int, bytes]]) -> None:
    asyncio.run(exercise(adapter(kind, answers)))


# Answers shaped like each SIEM's, with hostile values where the adapters read them.
la_bodies = st.builds(lambda rows, err, cols: orjson.dumps(
    {"tables": [{"name": "PrimaryResult", "columns": cols, "rows": rows}], **({"error": err} if err else {})}),
    st.lists(st.lists(json_values, max_size=4), max_size=4), st.one_of(st.none(), json_values), json_values)
splunk_rows = st.one_of(
    st.fixed_dictionaries({"preview": st.booleans(), "offset": json_values, "result": st.one_of(
        json_values, st.fixed_dictionaries({"_time": json_values, "n": json_values, "d": json_values,
                                            "Id": json_values}))}),
    st.fixed_dictionaries({"preview": st.just(False), "lastrow": st.just(True)}),
    st.fixed_dictionaries({"messages": st.one_of(json_values, st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["FATAL", "ERROR", "INFO"]), "text": st.one_of(st.just(SECRET), json_values)}),
        max_size=2))}),
    json_values)
splunk_bodies = st.lists(splunk_rows, max_size=5).map(lambda rows: b"\n".join(orjson.dumps(r) for r in rows))
es_hits = st.lists(st.one_of(json_values, st.fixed_dictionaries(
    {"fields": st.one_of(json_values, st.fixed_dictionaries({"Id": json_values})), "sort": json_values})),
    max_size=4)
es_bodies = st.builds(lambda pit, hits, aggs, shards, timed_out: orjson.dumps(
    {"id": pit, "pit_id": pit, "hits": {"hits": hits}, "aggregations": aggs, "_shards": shards,
     "timed_out": timed_out}),
    json_values, es_hits, st.one_of(json_values, st.fixed_dictionaries({"b": st.fixed_dictionaries(
        {"buckets": st.lists(st.one_of(json_values, st.fixed_dictionaries(
            {"key": json_values, "doc_count": json_values, "d": json_values})), max_size=3)})})),
    json_values, json_values)
answers = st.lists(st.tuples(statuses, bodies), min_size=1, max_size=3)


@FUZZ
@example([(200, b'{"tables": [{"rows": [["2026-03-01T00:00:00Z"]]}]}')])
@example([(200, b'{"tables": [{"rows": [["9999-12-31T23:59:59-01:00", 1, 1]]}]}')])
@given(answers=st.one_of(answers, st.lists(st.tuples(st.just(200), la_bodies), min_size=1, max_size=3)))
def test_log_analytics(answers: list[tuple[int, bytes]]) -> None:
    run("sentinel", answers)


@FUZZ
@example([(200, b'{"preview": false, "result": {"n": 1}}')])
@example([(200, b'{"messages": [1]}')])
@given(answers=st.one_of(answers, st.lists(st.tuples(st.just(200), splunk_bodies), min_size=1, max_size=3)))
def test_splunk_export(answers: list[tuple[int, bytes]]) -> None:
    run("splunk", answers)


@FUZZ
@example([(200, b'{"_shards": [], "hits": []}')])
@example([(200, b'{"id": "p", "hits": {"hits": [{"fields": {"Id": "a"}}]}}')])
@given(answers=st.one_of(answers, st.lists(st.tuples(st.just(200), es_bodies), min_size=1, max_size=3)))
def test_elastic_search_and_pit(answers: list[tuple[int, bytes]]) -> None:
    run("elastic", answers)
