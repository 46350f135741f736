"""`agent.siem.sentinel.writer`: one Logs Ingestion request per batch, and what each answer means for
the batch (acknowledged, in doubt, refused, failed). Logs Ingestion has no create-once, so only what
is certainly not stored (a 429) is resent here."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from agent.errors import ConfigError, TransientApiError
from agent.siem.base import BackfillRefused, TooLarge
from agent.siem.sentinel.writer import SentinelWriter
from tests.siem.fakes import DCR, TENANT, FakeHttp, Sleeps, answer, siem

STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
IDS = ["2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d", "3f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"]


def _writer(http: FakeHttp, sleeps: Sleeps | None = None, **keys: Any) -> tuple[SentinelWriter, list[bool]]:
    invalidated: list[bool] = []

    async def token() -> str:
        return "ingest-token"

    async def invalidate() -> None:
        invalidated.append(True)

    w = SentinelWriter(siem("sentinel", **keys), http, token, invalidate, sleep=sleeps or Sleeps())  # type: ignore[arg-type]
    return w, invalidated


def _items(w: SentinelWriter) -> list[tuple[str, bytes]]:
    return [(i, w.encode(TENANT, STREAM, {"id": i, "activityDateTime": "2026-03-10T10:00:00Z"}, NOW)) for i in IDS]


def test_backfill_needs_the_ingestion_endpoint_and_dcr() -> None:
    with pytest.raises(ConfigError, match=r"siem\.ingestion_endpoint and siem\.dcr_immutable_id are required"):
        _writer(FakeHttp([]), ingestion_endpoint=None, dcr_immutable_id=None)


async def test_a_batch_is_one_gzip_array_into_the_streams_dcr_stream() -> None:
    http = FakeHttp([answer(204)])
    w, _ = _writer(http)
    items = _items(w)
    result = await w.send(TENANT, STREAM, items)
    assert result.acked == set(IDS) and result.requests == 1
    sent = http.sent[0]
    assert sent.url == (f"https://dce.test/dataCollectionRules/{DCR}/streams/Custom-AuditLogs_Backfill_CL"
                        "?api-version=2023-01-01")
    assert sent.headers["Authorization"] == "Bearer ingest-token" and sent.headers["Content-Encoding"] == "gzip"
    rows = orjson.loads(gzip.decompress(sent.data or b""))
    assert [r["Id"] for r in rows] == IDS and rows[0]["TimeGenerated"] == "2026-03-10T10:00:00Z"
    assert w.body_size(items) == len(gzip.decompress(sent.data or b""))
    assert w.identity == f"https://dce.test|{DCR}"


async def test_a_429_is_waited_out_and_the_batch_resent() -> None:
    sleeps = Sleeps()
    http = FakeHttp([answer(429, headers={"Retry-After": "4"}), answer(204)])
    w, _ = _writer(http, sleeps)
    assert (await w.send(TENANT, STREAM, _items(w))).acked == set(IDS)
    assert sleeps.calls == [4.0] and len(http.sent) == 2


@pytest.mark.parametrize("fault", [answer(500), answer(503), TransientApiError("connection reset")])
async def test_a_server_fault_after_the_body_went_out_leaves_the_batch_in_doubt(fault: object) -> None:
    """The workspace may have stored it and has no dedup: never resent blindly."""
    http = FakeHttp([fault])  # type: ignore[list-item]
    w, _ = _writer(http)
    result = await w.send(TENANT, STREAM, _items(w))
    assert result.in_doubt == set(IDS) and not result.acked and len(http.sent) == 1


async def test_an_expired_token_is_renewed_once() -> None:
    http = FakeHttp([answer(401, {"error": {"code": "InvalidAuthenticationToken"}}), answer(204)])
    w, invalidated = _writer(http)
    assert (await w.send(TENANT, STREAM, _items(w))).acked == set(IDS)
    assert invalidated == [True]


@pytest.mark.parametrize(("status", "hint"), [(401, "token audience"), (403, "Monitoring Metrics Publisher"),
                                              (404, "dcr_immutable_id")])
async def test_a_refusal_no_retry_fixes_stops_the_backfill_with_a_hint(status: int, hint: str) -> None:
    http = FakeHttp([answer(status, {"error": {"code": "X", "message": "no"}})], repeat_last=True)
    w, _ = _writer(http)
    with pytest.raises(BackfillRefused, match=hint):
        await w.send(TENANT, STREAM, _items(w))


async def test_an_oversized_batch_is_split_and_bad_data_fails() -> None:
    w, _ = _writer(FakeHttp([answer(413, {"error": {"message": "too big"}})]))
    with pytest.raises(TooLarge):
        await w.send(TENANT, STREAM, _items(w))
    w, _ = _writer(FakeHttp([answer(400, {"error": {"code": "InvalidStream", "message": "bad row"}})]))
    result = await w.send(TENANT, STREAM, _items(w))
    assert set(result.failed) == set(IDS) and "bad row" in result.failed[IDS[0]]


async def test_throttling_that_never_ends_fails_the_batch_after_the_attempts() -> None:
    http = FakeHttp([answer(429)], repeat_last=True)
    w, _ = _writer(http, backfill_max_attempts=3)
    result = await w.send(TENANT, STREAM, _items(w))
    assert set(result.failed) == set(IDS) and "after 3 attempts" in result.failed[IDS[0]] and len(http.sent) == 3


def test_a_stream_without_a_backfill_table_has_no_destination() -> None:
    w, _ = _writer(FakeHttp([]), backfill_suffix="")
    with pytest.raises(ConfigError, match=r'siem\.streams\."graph\.directory_audits"\.dcr_stream is required'):
        w.destination(STREAM)


def test_a_record_over_the_field_limit_is_not_whole() -> None:
    w, _ = _writer(FakeHttp([]))
    assert w.whole(STREAM, {"id": "x"}) and not w.whole(STREAM, {"id": "x", "blob": "y" * 70_000})
