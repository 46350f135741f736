"""`agent.siem.elastic.writer`: `_bulk` `create` with `_id` = record id, so a resend is a 409 and never
a second document; a dropped connection or a 5xx is resent, per-item 429s are resent alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError, TransientApiError
from agent.siem.base import BackfillRefused, TooLarge
from agent.siem.elastic.writer import ElasticWriter
from tests.siem.fakes import TENANT, FakeHttp, Sent, Sleeps, answer, siem

STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
IDS = ["2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d", "3f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d",
       "4f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"]


def _writer(http: FakeHttp, sleeps: Sleeps | None = None, **keys: Any) -> ElasticWriter:
    return ElasticWriter(siem("elastic", **keys), http, "es-key", sleep=sleeps or Sleeps())  # type: ignore[arg-type]


def _items(w: ElasticWriter, ids: list[str] = IDS) -> list[tuple[str, bytes]]:
    return [(i, w.encode(TENANT, STREAM, {"id": i, "activityDateTime": "2026-03-10T10:00:00Z"}, NOW)) for i in ids]


def _bulk(*statuses: int) -> dict[str, Any]:
    items = []
    for s in statuses:
        item: dict[str, Any] = {"status": s}
        if s >= 300:
            item["error"] = {"type": {409: "version_conflict_engine_exception", 429: "es_rejected_execution_exception"}
                             .get(s, "mapper_parsing_exception"), "reason": "because"}
        items.append({"create": item})
    return {"errors": any(s >= 300 for s in statuses), "items": items}


def _sent_ids(sent: Sent) -> list[str]:
    lines = (sent.data or b"").splitlines()
    return [orjson.loads(a)["create"]["_id"] for a in lines[::2]]


async def test_each_item_answer_is_kept_and_only_rejected_items_are_resent() -> None:
    sleeps = Sleeps()
    http = FakeHttp([answer(200, _bulk(201, 409, 429)), answer(200, _bulk(201))])
    w = _writer(http, sleeps)
    result = await w.send(TENANT, STREAM, _items(w))
    assert result.acked == {IDS[0], IDS[2]} and result.present == {IDS[1]} and not result.failed
    assert _sent_ids(http.sent[0]) == IDS and _sent_ids(http.sent[1]) == [IDS[2]]
    assert http.sent[0].url == "https://es.test:9200/_bulk" and http.sent[0].headers["Authorization"] == "ApiKey es-key"
    assert len(sleeps.calls) == 1


async def test_the_action_line_creates_with_the_record_id_in_the_backfill_data_stream() -> None:
    w = _writer(FakeHttp([]))
    action, doc = w.encode(TENANT, STREAM, {"id": IDS[0], "activityDateTime": "2026-03-10T10:00:00Z"}, NOW) \
        .splitlines()
    assert orjson.loads(action) == {"create": {"_index": "logs-azure.auditlogs-backfill", "_id": IDS[0]}}
    assert orjson.loads(doc)["azure"]["auditlogs"]["properties"]["id"] == IDS[0]
    assert w.identity == "https://es.test:9200"


@pytest.mark.parametrize("fault", [answer(503), answer(429), TransientApiError("connection reset")])
async def test_a_failed_request_is_resent_whole_since_create_is_idempotent(fault: Any) -> None:
    http = FakeHttp([fault, answer(200, _bulk(409, 201, 201))])
    w = _writer(http)
    result = await w.send(TENANT, STREAM, _items(w))
    assert result.present == {IDS[0]} and result.acked == set(IDS[1:]) and len(http.sent) == 2


async def test_a_rejected_document_fails_with_the_reason() -> None:
    w = _writer(FakeHttp([answer(200, _bulk(201, 400, 201))]))
    result = await w.send(TENANT, STREAM, _items(w))
    assert result.failed == {IDS[1]: "400 mapper_parsing_exception: because"}


@pytest.mark.parametrize(("resp", "error"), [
    (answer(401, {"error": {"type": "security_exception", "reason": "bad key"}}), BackfillRefused),
    (answer(404, {"error": {"type": "index_not_found_exception", "reason": "no"}}), BackfillRefused),
    (answer(200, {"items": [{"create": {"status": 201}}]}), BackfillRefused),  # 1 answer for 3 items
    (answer(200, b"<html>proxy</html>"), BackfillRefused),
    (answer(413, b""), TooLarge),
])
async def test_answers_no_retry_fixes(resp: Any, error: type[Exception]) -> None:
    w = _writer(FakeHttp([resp]))
    with pytest.raises(error):
        await w.send(TENANT, STREAM, _items(w))


async def test_item_429s_that_never_end_fail_after_the_attempts() -> None:
    http = FakeHttp([answer(200, _bulk(429, 429, 429))], repeat_last=True)
    w = _writer(http, backfill_max_attempts=2)
    result = await w.send(TENANT, STREAM, _items(w))
    assert set(result.failed) == set(IDS) and "after 2 attempts" in result.failed[IDS[0]] and len(http.sent) == 2


def test_a_backfill_index_must_name_one_index() -> None:
    w = _writer(FakeHttp([]), streams={STREAM: {"backfill_index": "logs-*"}})
    with pytest.raises(ConfigError, match=r'siem\.streams\."graph\.directory_audits"\.backfill_index must name one'):
        w.destination(STREAM)
