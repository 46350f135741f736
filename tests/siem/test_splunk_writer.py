"""`agent.siem.splunk.writer`: HEC events with indexer acknowledgement, and what each HEC code means
for the batch. Without an ack the batch is in doubt (the engine searches for it) and never resent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError, TransientApiError
from agent.siem.base import BackfillRefused, TooLarge
from agent.siem.splunk.writer import SplunkWriter
from tests.siem.fakes import TENANT, FakeHttp, Sleeps, answer, siem

STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
IDS = ["2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d", "3f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"]
OK = {"text": "Success", "code": 0}


@pytest.fixture(autouse=True)
def _tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SIEM_TOKEN", "search-token")
    monkeypatch.setenv("FAKE_HEC_TOKEN", "hec-token")


def _writer(http: FakeHttp, sleeps: Any = None, **keys: Any) -> SplunkWriter:
    return SplunkWriter(siem("splunk", **keys), http, sleep=sleeps or Sleeps())  # type: ignore[arg-type]


def _items(w: SplunkWriter) -> list[tuple[str, bytes]]:
    return [(i, w.encode(TENANT, STREAM, {"id": i, "activityDateTime": "2026-03-10T10:00:00Z"}, NOW)) for i in IDS]


def test_backfill_needs_the_hec_url_and_token() -> None:
    with pytest.raises(ConfigError, match=r"siem\.hec_url and siem\.hec_token_file"):
        _writer(FakeHttp([]), hec_url=None, hec_token_env=None)


async def test_events_are_sent_on_a_channel_and_acknowledged_by_the_indexer() -> None:
    http = FakeHttp([answer(200, {**OK, "ackId": 7}), answer(200, {"acks": {"7": False}}),
                     answer(200, {"acks": {"7": True}})])
    w = _writer(http)
    items = _items(w)
    result = await w.send(TENANT, STREAM, items)
    assert result.acked == set(IDS) and result.requests == 3
    post, ack = http.sent[0], http.sent[1]
    assert post.url == "https://splunk.test:8088/services/collector/event"
    assert post.headers["Authorization"] == "Splunk hec-token" and post.headers["X-Splunk-Request-Channel"] == w.channel
    events = [orjson.loads(line) for line in (post.data or b"").split(b"\n")]
    assert [e["event"]["id"] for e in events] == IDS and events[0]["sourcetype"] == "azure:aad:audit"
    assert w.body_size(items) == len(post.data or b"")
    assert ack.url == f"https://splunk.test:8088/services/collector/ack?channel={w.channel}"
    assert orjson.loads(ack.data or b"") == {"acks": [7]}
    assert w.destination(STREAM) == "index=main sourcetype=azure:aad:audit"


async def test_an_ack_that_never_comes_leaves_the_batch_in_doubt() -> None:
    import asyncio

    http = FakeHttp([answer(200, {**OK, "ackId": 1}), answer(200, {"acks": {"1": False}})], repeat_last=True)
    w = _writer(http, asyncio.sleep, hec_ack_timeout="0.2s", hec_ack_interval="0.05s")
    result = await w.send(TENANT, STREAM, _items(w))
    assert result.in_doubt == set(IDS) and not result.acked and not result.unconfirmed


async def test_a_token_without_acks_makes_the_batch_unconfirmed_and_warns_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Splunk Cloud: the 200 means "looked valid", not "indexed"; the engine settles it by searching."""
    http = FakeHttp([answer(200, OK)], repeat_last=True)
    w = _writer(http, hec_ack_timeout="30s", hec_ack_interval="2s")
    assert (w.confirm_timeout.total_seconds(), w.confirm_interval.total_seconds()) == (30, 2)
    with caplog.at_level(logging.WARNING, logger="agent.backfill"):
        first = await w.send(TENANT, STREAM, _items(w))
        await w.send(TENANT, STREAM, _items(w))
    assert first.in_doubt == first.unconfirmed == set(IDS) and not first.acked
    assert sum("without an ackId" in r.getMessage() for r in caplog.records) == 1


async def test_busy_is_waited_out_and_resent() -> None:
    sleeps = Sleeps()
    http = FakeHttp([answer(503, {"text": "Server is busy", "code": 9}), answer(200, {**OK, "ackId": 2}),
                     answer(200, {"acks": {"2": True}})])
    w = _writer(http, sleeps)
    assert (await w.send(TENANT, STREAM, _items(w))).acked == set(IDS)
    assert len(sleeps.calls) == 2  # the busy pause, then the first ack poll


@pytest.mark.parametrize(("resp", "outcome"), [
    (answer(403, {"text": "Invalid token", "code": 4}), "refused"),
    (answer(400, {"text": "Incorrect index", "code": 7}), "refused"),
    (answer(400, {"text": "ACK is disabled", "code": 14}), "refused"),
    (answer(400, {"text": "Invalid data format", "code": 6}), "failed"),
    (answer(500, {"text": "Internal server error", "code": 8}), "in_doubt"),
    (TransientApiError("connection reset"), "in_doubt"),
    (answer(413, b"Content too large"), "too_large"),
])
async def test_each_hec_answer_decides_the_batch(resp: Any, outcome: str) -> None:
    w = _writer(FakeHttp([resp]))
    if outcome == "refused":
        with pytest.raises(BackfillRefused, match="HEC refused the backfill"):
            await w.send(TENANT, STREAM, _items(w))
        return
    if outcome == "too_large":
        with pytest.raises(TooLarge):
            await w.send(TENANT, STREAM, _items(w))
        return
    result = await w.send(TENANT, STREAM, _items(w))
    assert (set(result.failed) if outcome == "failed" else result.in_doubt) == set(IDS)
    assert not result.acked


async def test_ack_enabled_tells_a_token_with_acks_from_one_without() -> None:
    assert await _writer(FakeHttp([answer(200, {"acks": {"0": False}})])).ack_enabled()
    assert not await _writer(FakeHttp([answer(400, {"text": "ACK is disabled", "code": 14})])).ack_enabled()
    with pytest.raises(BackfillRefused, match="code 4"):
        await _writer(FakeHttp([answer(403, {"text": "Invalid token", "code": 4})])).ack_enabled()
