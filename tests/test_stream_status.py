"""The typed stream status and gaps write exactly the document earlier versions wrote: the same keys,
in the same order, byte for byte (`agent status`, the tests and operators' tools read it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.checkpoint import Checkpoints, Gap, Recovery, StreamStatus, status_key
from agent.store.local import LocalStore

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
S = "o365.exchange"
# Written by the previous, untyped code (record_gaps, update_status, mark_recovered) for the history
# replayed below: a lost blob (tests/sources/management_activity/test_source.py), a pass that failed,
# a retention span and a record set aside (tests/faults/test_graph_paging.py), the blob recovered
# through deep history.
SAMPLE = (
    b'{"gaps":[{"stream":"o365.exchange","window":{"start":"2026-03-10T06:00:00Z","end":"2026-03-10T12:00:00Z"},'
    b'"content_id":"blob-1","content_created":"2026-03-03T11:00:00Z","content_expiration":"2026-03-10T11:00:00Z",'
    b'"reason":"expired before it could be fetched","recorded_at":"2026-03-10T12:00:00Z","recovered":{"api":'
    b'"audit_log_query","start":"2026-03-02T12:00:00Z","end":"2026-03-03T12:00:00Z","records_returned":3,'
    b'"at":"2026-03-10T12:11:00Z"}},{"stream":"o365.exchange","window":{"start":"2026-03-01T12:00:00Z",'
    b'"end":"2026-03-03T12:00:00Z"},"content_id":null,"content_created":null,"content_expiration":null,'
    b'"reason":"retention: this contentCreated span aged past the API\'s 7 days before it was listed",'
    b'"recorded_at":"2026-03-10T12:10:00Z"},{"stream":"o365.exchange","window":{"start":"2026-03-10T06:00:00Z",'
    b'"end":"2026-03-10T12:00:00Z"},"content_id":null,"content_created":null,"content_expiration":null,'
    b'"reason":"record 1 of a body is not valid JSON","recorded_at":"2026-03-10T12:10:00Z",'
    b'"quarantine":"_meta/quarantine/x.zst"}],"last_success":"2026-03-10T12:12:00Z","cursor":'
    b'"2026-03-10T12:12:00Z","last_error":null,"records_stored":7,"last_error_kind":"BlobUnavailable",'
    b'"last_error_at":"2026-03-10T12:05:00.000250Z"}'
)
M = timedelta(minutes=1)


def test_a_stored_document_round_trips_byte_for_byte() -> None:
    import orjson

    status = StreamStatus.from_doc(orjson.loads(SAMPLE))
    assert status.to_json() == SAMPLE
    assert status.open_gaps == 2 and status.records_stored == 7 and status.last_error is None
    assert [g.key for g in status.gaps] == ["blob-1", "retention:2026-03-01T12:00:00Z", "_meta/quarantine/x.zst"]


async def test_the_same_history_through_the_typed_api_writes_the_same_bytes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cps = Checkpoints(store)
    window = (NOW - timedelta(hours=6), NOW)
    blob = Gap(S, *window, "expired before it could be fetched", NOW, "blob-1", NOW - timedelta(days=7, hours=1),
               NOW - timedelta(hours=1))
    aged = Gap(S, NOW - timedelta(days=9), NOW - timedelta(days=7), "retention: this contentCreated span aged "
               "past the API's 7 days before it was listed", NOW + 10 * M)
    aside = Gap(S, *window, "record 1 of a body is not valid JSON", NOW + 10 * M, quarantine="_meta/quarantine/x.zst")
    recovery = Recovery("audit_log_query", NOW - timedelta(days=8), NOW - timedelta(days=7), 3, NOW + 11 * M)

    async def update(change: object) -> None:
        status = await cps.status("t", S)
        change(status)  # type: ignore[operator]
        await cps.save_status("t", S, status)

    await update(lambda s: (s.merge_gaps([blob]), s.succeeded(NOW, NOW, 5)))
    await update(lambda s: s.failed("boom", "BlobUnavailable", NOW + 5 * M + timedelta(microseconds=250)))
    await update(lambda s: (s.merge_gaps([aged, aside, blob.closed(recovery)]), s.succeeded(NOW + 12 * M,
                                                                                             NOW + 12 * M, 2)))
    assert await store.get(status_key("t", S)) == SAMPLE


def test_a_recovered_gap_stays_closed_and_is_not_new_when_found_again() -> None:
    status = StreamStatus()
    blob = Gap(S, NOW - M, NOW, "expired", NOW, "blob-1")
    assert status.merge_gaps([blob]) == [blob]
    recovery = Recovery("audit_log_query", NOW - timedelta(days=1), NOW, 1, NOW)
    assert status.merge_gaps([blob.closed(recovery)]) == []
    assert status.merge_gaps([blob]) == [] and status.gaps[0].recovered == recovery and status.open_gaps == 0


def test_a_gap_recovered_in_the_window_that_found_it_is_not_new() -> None:
    blob = Gap(S, NOW - M, NOW, "expired", NOW, "blob-1")
    closed = blob.closed(Recovery("audit_log_query", NOW - timedelta(days=1), NOW, 1, NOW))
    status = StreamStatus()
    assert status.merge_gaps([closed]) == [] and status.open_gaps == 0 and len(status.gaps) == 1


def test_keys_this_version_does_not_know_are_kept_in_place() -> None:
    doc = {"later_field": {"x": 1}, "last_success": "2026-03-10T12:00:00Z"}
    status = StreamStatus.from_doc(doc)
    status.succeeded(NOW + M, None, 0)
    assert list(status.to_doc()) == ["later_field", "last_success", "cursor", "last_error", "records_stored"]
    assert status.to_doc()["later_field"] == {"x": 1} and status.to_doc()["cursor"] is None
