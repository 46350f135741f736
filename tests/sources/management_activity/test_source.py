"""The Management Activity source against the in-process TLS fake, mostly through the collect loop."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
import zstandard

from agent.sources.base import Window
from tests.sources.management_activity.conftest import NOW, TENANT, Env, Fault

EXO, SPO = "o365.exchange", "o365.sharepoint"
EXO_CT, SPO_CT = "Audit.Exchange", "Audit.SharePoint"
H = timedelta(hours=1)


async def test_a_pass_archives_every_blob_and_accounts_for_each_window(env: Env):
    env.fake.add("a", EXO_CT, NOW - 30 * H, n=3)
    env.fake.add("b", EXO_CT, NOW - 2 * H, n=2)
    env.fake.add("other", SPO_CT, NOW - 2 * H, n=5)  # another content type stays out of this stream
    out = (await env.run(EXO))[EXO]
    assert out.ok and not out.new_gaps, out.error
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["a-r0", "a-r1", "a-r2", "b-r0", "b-r1"]
    assert await env.cursor(EXO) == NOW  # contentCreated position: everything listed up to now
    ledgers = await env.ledgers(EXO)
    assert sum(ledger["listed"] for ledger in ledgers) == 2
    assert sum(ledger["fetched"] for ledger in ledgers) == 2
    assert sum(ledger["records"] for ledger in ledgers) == 5
    assert all(ledger["status"] == "complete" and ledger["gaps"] == [] for ledger in ledgers)
    assert len(await env.accounted(EXO)) == 2
    env.clock.advance(timedelta(minutes=5))
    assert (await env.run(EXO))[EXO].ok
    assert len(env.fake.blob_gets()) == 2  # archived blobs are not downloaded again
    unchanged = {x["key"]: x for x in await env.ledgers(EXO)}
    assert all(unchanged[x["key"]] == x for x in ledgers)  # quiet re-listings rewrite nothing


@pytest.mark.parametrize("header", ["NextPageUri", "NextPageUrl", "nextpageuri"])
async def test_paging_follows_next_page_links_and_processes_in_sorted_order(env: Env, header: str):
    env.fake.next_header = header
    env.fake.page_size = 2
    env.fake.reverse = True  # the fake lists newest first; the agent must sort
    for i in range(5):
        env.fake.add(f"blob{i}", EXO_CT, NOW - 3 * H + i * timedelta(minutes=7), n=1)
    window = Window(NOW - 4 * H, NOW)
    env.source.plan(EXO, None, None, None, NOW)
    order = [batch[0]["Id"] async for batch in env.source.open(EXO, window).batches()]
    assert order == [f"blob{i}-r0" for i in range(5)]  # contentCreated, then contentId
    pages = [r for r in env.fake.requests if r.path.endswith("/subscriptions/content")]
    assert len(pages) == 3 and [("nextPage" in p.query) for p in pages] == [False, True, True]
    assert pages[1].path.startswith("/api/v1/")  # the link was followed as given


async def test_duplicates_across_blobs_and_relistings_are_stored_once_and_blobs_fetched_once(env: Env):
    # Microsoft repeats records (same Id, same CreationTime) in different blobs by design.
    when = NOW - 6 * H
    env.fake.add("a", EXO_CT, NOW - 5 * H, ids=["dup", "a1"], when=when)
    env.fake.add("b", EXO_CT, NOW - 4 * H, ids=["dup", "b1"], when=when)
    assert (await env.run(EXO))[EXO].ok
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["a1", "b1", "dup"]
    env.clock.advance(10 * timedelta(minutes=1))
    env.fake.add("late", EXO_CT, NOW - 3 * H, ids=["dup", "late1"], when=when)  # listed late, behind the cursor
    out = (await env.run(EXO))[EXO]
    assert out.ok
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["a1", "b1", "dup", "late1"]
    assert sorted(env.fake.blob_gets()) == sorted(b.content_id for b in env.fake.blobs)  # each fetched once
    ledger = next(x for x in await env.ledgers(EXO) if x["listed"] == 3)
    assert ledger["fetched"] == 3 and ledger["records"] == 6 and ledger["updates"] == 2


async def test_af429_as_403_is_retried_after_a_pause(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("blob", 403, "AF429")
    env.fake.fail("content", 403, "AF429")
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert len(await env.records(EXO)) == 2
    assert env.sleeps.count(0.01) == 2  # the throttle wait, once per throttled request


async def test_every_request_is_paced_by_the_tenant_limiter(env: Env):
    for i in range(6):
        env.fake.add(f"b{i}", EXO_CT, NOW - 2 * H + i * timedelta(minutes=1))
    assert (await env.run(EXO))[EXO].ok
    assert env.limiter.acquired == len(env.fake.requests)  # blob GETs included


async def test_blob_downloads_run_in_parallel_within_the_bound(env: Env):
    env.fake.blob_delay = 0.02
    for i in range(12):
        env.fake.add(f"b{i}", EXO_CT, NOW - 2 * H + i * timedelta(minutes=1))
    assert (await env.run(EXO))[EXO].ok
    assert 1 < env.fake.max_in_flight <= env.source.cfg.management_concurrency


async def test_token_rejected_is_refreshed_and_retried(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("blob", 401, "")
    assert (await env.run(EXO))[EXO].ok
    assert env.tokens.invalidated == 1


async def test_subscriptions_are_listed_once_and_missing_ones_started(env: Env):
    del env.fake.subscriptions[SPO_CT]
    env.fake.add("a", SPO_CT, NOW - 2 * H)
    outs = await env.run(EXO, SPO)
    assert all(o.ok for o in outs.values())
    env.clock.advance(timedelta(minutes=5))
    assert all(o.ok for o in (await env.run(EXO, SPO)).values())
    assert env.fake.count("GET", "/subscriptions/list") == 1  # once per tenant per process
    assert env.fake.count("POST", "/subscriptions/start") == 1
    assert env.fake.subscriptions[SPO_CT] == "enabled"


async def test_already_enabled_af20024_counts_as_started(env: Env):
    # The list still shows it disabled, but another collector enabled it meanwhile: start says AF20024.
    env.fake.faults["list"].append(Fault(200, body=b'[{"contentType": "Audit.Exchange", "status": "disabled"}]'))
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert env.fake.count("POST", "/subscriptions/start") == 1
    assert len(await env.records(EXO)) == 2


async def test_af20022_while_listing_starts_the_subscription_then_lists_again(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("content", 400, "AF20022")
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert env.fake.count("POST", "/subscriptions/start") == 1
    assert len(await env.records(EXO)) == 2


async def test_af20022_restart_throttled_by_the_start_interval_fails_the_run_visibly(env: Env):
    """AF20022 while listing, and the re-start answered AF429 (15 minutes between start requests):
    one start try, no retry loop, the stream fails visibly with its cursor unmoved; the next run collects."""
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("content", 400, "AF20022")
    env.fake.fail("start", 403, "AF429")
    out = (await env.run(EXO))[EXO]
    assert not out.ok and "15 minutes between subscription start requests" in (out.error or "")
    assert env.fake.count("POST", "/subscriptions/start") == 1
    assert await env.cursor(EXO) is None
    env.fake.fail("content", 400, "AF20022")
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert len(await env.records(EXO)) == 2


async def test_admin_disabled_subscription_stops_the_stream_visibly(env: Env, caplog: pytest.LogCaptureFixture):
    env.fake.subscriptions[EXO_CT] = "admin_disabled"
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    with caplog.at_level(logging.ERROR, logger="agent"):
        out = (await env.run(EXO))[EXO]
    assert not out.ok and out.error_kind == "SubscriptionDisabled"
    assert "administrator" in (out.error or "")
    status = await env.status(EXO)
    assert status["last_error_kind"] == "SubscriptionDisabled"
    assert await env.cursor(EXO) is None
    assert env.fake.count("POST", "/subscriptions/start") == 1  # one attempt, no retry loop
    assert any("disabled by an administrator" in r.getMessage() for r in caplog.records)


async def test_admin_disabled_while_listing_is_not_retried(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("content", 400, "AF20023")
    out = (await env.run(EXO))[EXO]
    assert out.error_kind == "SubscriptionDisabled"
    assert env.fake.count("GET", "/subscriptions/content") == 1
    assert env.fake.count("POST", "/subscriptions/start") == 0


async def test_transient_listing_and_malformed_blobs_are_retried(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("content", 503, body=b"<html>busy</html>")
    env.fake.fail("blob", 200, body=b'[{"Id": "a-r0", "CreationTi')  # truncated body
    env.fake.fail("blob", 200, body=b'{"not": "an array"}')
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["a-r0", "a-r1"]


async def test_a_failing_unexpired_blob_fails_the_window_and_holds_the_cursor(env: Env):
    env.fake.add("ok", EXO_CT, NOW - 20 * H)
    env.fake.add("bad", EXO_CT, NOW - 3 * H)
    env.fake.add("after", EXO_CT, NOW - 1 * H)
    env.fake.always["blob:bad"] = Fault(503, body=b"<html>Service Unavailable</html>")  # fails every time
    first = (await env.run(EXO))[EXO]
    assert not first.ok and first.error_kind == "BlobUnavailable" and not first.new_gaps
    assert "bad" in (first.error or "") and "next pass retries" in (first.error or "")
    cursor = await env.cursor(EXO)
    assert cursor is not None and cursor <= NOW - 3 * H  # never past the failing blob
    failed = [x for x in await env.ledgers(EXO) if x["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["failed"] == 1
    assert (await env.status(EXO))["last_error_kind"] == "BlobUnavailable"
    del env.fake.always["blob:bad"]
    env.clock.advance(timedelta(minutes=5))
    second = (await env.run(EXO))[EXO]
    assert second.ok, second.error
    assert sorted(r["Id"] for r in await env.records(EXO)) == sorted(
        f"{b}-r{i}" for b in ("ok", "bad", "after") for i in range(2))
    assert await env.cursor(EXO) == NOW + timedelta(minutes=5)
    assert all(x["status"] == "complete" for x in await env.ledgers(EXO))


async def test_a_blob_invalid_on_every_attempt_is_kept_and_named_not_retried_forever(env: Env):
    """Valid-looking JSON that is invalid further on fails the same way on every pass: set aside."""
    env.fake.add("ok", EXO_CT, NOW - 20 * H)
    env.fake.add("bad", EXO_CT, NOW - 3 * H)
    env.fake.add("after", EXO_CT, NOW - 1 * H)
    bad = b'{"Id": "bad-r0", "CreationTime": "2026-03-10T10:00:00", "Value": NaN}'
    good = b'{"Id": "bad-r1", "CreationTime": "2026-03-10T10:00:00", "Operation": "Test"}'
    env.fake.always["blob:bad"] = Fault(200, body=b"[" + good + b",\n " + bad + b"]")
    first = (await env.run(EXO))[EXO]
    assert first.error is None and len(first.new_gaps) == 1
    [g] = (await env.status(EXO))["gaps"]
    assert "not valid JSON" in g["reason"] and g["quarantine"].startswith("_meta/quarantine/")
    assert zstandard.ZstdDecompressor().decompress(await env.store.get(g["quarantine"])) == bad
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["after-r0", "after-r1", "bad-r1", "ok-r0", "ok-r1"]
    assert await env.cursor(EXO) == NOW  # the stream moved on
    again = (await env.run(EXO))[EXO]
    assert again.ok and not again.new_gaps and env.fake.blob_gets().count(_blob_path(env, "bad")) == \
        env.source.cfg.max_attempts  # accounted for: not fetched again


async def test_blob_entries_that_are_not_objects_are_set_aside_and_the_rest_stored(env: Env):
    blob = env.fake.add("mixed", EXO_CT, NOW - 2 * H)
    blob.records.insert(1, [1, 2, 3])  # type: ignore[arg-type]
    outcome = (await env.run(EXO))[EXO]
    assert outcome.error is None and len(outcome.new_gaps) == 1
    assert "list where a record" in outcome.new_gaps[0].reason
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["mixed-r0", "mixed-r1"]


def _blob_path(env: Env, label: str) -> str:
    blob = next(b for b in env.fake.blobs if b.label == label)
    return blob.content_id


async def _assert_gap(env: Env, label: str, reason: str) -> dict:
    blob = next(b for b in env.fake.blobs if b.label == label)
    [g] = (await env.status(EXO))["gaps"]
    assert g["content_id"] == blob.content_id and g["stream"] == EXO and reason in g["reason"]
    assert g["content_created"].startswith(blob.created.strftime("%Y-%m-%dT%H:%M:%S"))
    assert g["content_expiration"] and g["window"]["start"] and g["window"]["end"]
    [ledger] = [x for x in await env.ledgers(EXO) if x["gaps"]]
    assert ledger["gaps"] == [g] and ledger["expired"] == 1
    assert ledger["blobs"][blob.content_id]["state"] == "lost"
    return g


async def test_blob_reported_expired_is_an_exact_gap_and_fails_the_pass(env: Env,
                                                                      caplog: pytest.LogCaptureFixture):
    env.fake.add("fine", EXO_CT, NOW - 2 * H)
    env.fake.add("gone", EXO_CT, NOW - 3 * H)
    env.fake.fail("blob:gone", 400, "AF20051")
    with caplog.at_level(logging.ERROR, logger="agent"):
        out = (await env.run(EXO))[EXO]
    assert out.error is None and len(out.new_gaps) == 1 and out.gaps_total == 1
    assert not out.ok  # `collect --once` exits 1
    assert out.as_dict()["gaps"] == 1
    await _assert_gap(env, "gone", "AF20051")
    assert await env.cursor(EXO) == NOW  # the lost blob is accounted for, the rest archived
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["fine-r0", "fine-r1"]
    assert any("expired before it could be fetched" in r.getMessage() for r in caplog.records)
    env.clock.advance(timedelta(minutes=5))
    again = (await env.run(EXO))[EXO]
    assert again.ok and not again.new_gaps and again.gaps_total == 1  # recorded once; not re-fetched, not re-counted
    assert env.fake.blob_gets().count(env.fake.blobs[1].content_id) == 1


async def test_blob_listed_past_its_expiration_is_a_gap_without_a_download(env: Env):
    env.fake.add("stale", EXO_CT, NOW - 3 * H, expiration=NOW - timedelta(minutes=1))
    out = (await env.run(EXO))[EXO]
    assert len(out.new_gaps) == 1 and not out.ok
    await _assert_gap(env, "stale", "expired before it could be fetched")
    assert env.fake.blob_gets() == []


async def test_blob_missing_until_it_expires_is_a_gap_but_not_before(env: Env):
    env.fake.add("missing", EXO_CT, NOW - 3 * H, expiration=NOW + timedelta(minutes=20))
    env.fake.always["blob:missing"] = Fault(404, "AF20050")
    first = (await env.run(EXO))[EXO]
    assert first.error_kind == "BlobUnavailable" and not first.new_gaps  # not expired yet: retried next pass
    assert await env.cursor(EXO) is not None and await env.cursor(EXO) < NOW - 3 * H
    env.fake.on_blob = lambda: env.clock.advance(timedelta(minutes=10))  # retries outlive the blob
    second = (await env.run(EXO))[EXO]
    assert len(second.new_gaps) == 1 and second.error is None
    await _assert_gap(env, "missing", "missing (AF20050/404) until it expired")


async def test_clock_skew_learned_from_any_date_header_shifts_windows(env: Env, caplog: pytest.LogCaptureFixture):
    env.fake.skew = timedelta(minutes=30)  # the API's clock is 30 min ahead of ours
    env.fake.add("edge", EXO_CT, NOW - timedelta(hours=167, minutes=40))  # older than 7 days by the API's clock
    env.fake.add("recent", EXO_CT, NOW - 2 * H)
    with caplog.at_level(logging.WARNING, logger="agent"):
        out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert abs(env.source.clock_offset - timedelta(minutes=30)) < timedelta(seconds=5)
    assert any("clock differs" in r.getMessage() for r in caplog.records)
    assert sorted(r["Id"] for r in await env.records(EXO)) == ["recent-r0", "recent-r1"]
    # subscriptions/list already told us the offset, so even the first listing was sent on the API's clock.
    first = min(r.query["startTime"] for r in env.fake.requests if r.path.endswith("/content"))
    assert datetime.fromisoformat(first) >= (NOW + timedelta(minutes=30) - timedelta(days=7)).replace(tzinfo=None)


async def test_af20030_from_clock_skew_is_retried_on_the_servers_clock(env: Env):
    await env.source.client.ensure_subscription(EXO_CT, EXO)  # learned with clocks in step
    env.fake.skew = timedelta(minutes=30)  # then our clock falls behind
    env.fake.add("recent", EXO_CT, NOW - timedelta(hours=167, minutes=10))
    window = env.source.plan(EXO, None, None, None, NOW)[0]
    got = [batch[0]["Id"] async for batch in env.source.open(EXO, window).batches()]
    assert got == ["recent-r0"]
    first, second = [r.query["startTime"] for r in env.fake.requests if r.path.endswith("/content")]
    # Refused (AF20030: start older than 7 days by the API's clock), then re-sent 30 min later.
    assert datetime.fromisoformat(second) - datetime.fromisoformat(first) == timedelta(minutes=30)
    assert abs(env.source.clock_offset - timedelta(minutes=30)) < timedelta(seconds=5)


async def test_stale_next_page_is_relisted_from_a_fresh_clamped_window(env: Env):
    env.fake.page_size = 1
    env.fake.add("edge1", EXO_CT, NOW - timedelta(hours=167, minutes=30))
    env.fake.add("edge2", EXO_CT, NOW - timedelta(hours=167, minutes=20))
    # Following the link is slow: by then the window's original start is older than 7 days.
    env.fake.on_next_page = lambda: env.clock.advance(timedelta(minutes=10)) if env.clock() == NOW else None
    window = env.source.plan(EXO, None, None, None, NOW)[0]
    got = [batch[0]["Id"] async for batch in env.source.open(EXO, window).batches()]
    assert got == ["edge1-r0", "edge2-r0"]
    firsts = [r.query["startTime"] for r in env.fake.requests
              if r.path.endswith("/content") and "nextPage" not in r.query]
    assert len(firsts) == 2 and firsts[1] > firsts[0]  # re-listed from a later, still valid start


async def test_an_old_cursor_records_a_retention_gap(env: Env):
    await env.collector.checkpoints.save(TENANT, EXO, NOW - timedelta(days=9))
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert len(out.new_gaps) == 1 and not out.ok
    [g] = (await env.status(EXO))["gaps"]
    assert g["content_id"] is None and g["reason"].startswith("retention")
    assert g["window"]["start"] == "2026-03-01T12:00:00Z"  # from the cursor to the API's 7-day edge
    [aged] = [x for x in await env.ledgers(EXO) if x["status"] == "aged"]
    assert aged["gaps"] == [g]
    assert len(await env.records(EXO)) == 2


async def test_an_old_cursor_records_a_retention_gap_whatever_since_says(env: Env):
    old = NOW - timedelta(days=9)
    await env.collector.checkpoints.save(TENANT, EXO, old)
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    [out] = await env.collector.collect([EXO], since=NOW - 3 * H)
    # the span the cursor promised and the API no longer lists is named at once
    [g] = [x.to_doc() for x in out.new_gaps]
    assert g["reason"].startswith("retention") and g["window"]["start"] == "2026-03-01T12:00:00Z"
    assert out.cursor == old  # [7-day edge, since) was not collected: the cursor stays
    again = (await env.run(EXO))[EXO]
    assert not again.new_gaps and again.cursor == NOW  # crosses the recorded gap with the windows after it
    assert len((await env.status(EXO))["gaps"]) == 1


async def test_a_content_uri_on_another_host_never_gets_the_token(env: Env):
    env.fake.add("a", EXO_CT, NOW - 2 * H).uri = "https://collector.example/steal?x=1"
    out = (await env.run(EXO))[EXO]
    assert out.error_kind == "ApiError" and "outside the API host" in (out.error or "")
    assert "x=1" not in (out.error or "") and "test-token" not in (out.error or "")
    assert env.fake.blob_gets() == []


async def test_a_pass_that_dies_before_its_commit_finds_the_lost_blob_again(env: Env):
    """The run keeps a lost blob to itself until its commit (the ledger accounts it lost only then),
    so a process killed mid-window loses no gap: the next pass finds the blob lost again."""
    env.fake.add("fine", EXO_CT, NOW - 2 * H)
    env.fake.add("stale", EXO_CT, NOW - 3 * H, expiration=NOW - timedelta(minutes=1))
    found = []
    for window in env.source.plan(EXO, None, None, None, NOW):
        run = env.source.open(EXO, window)
        async for _ in run.batches():
            pass  # the records would be written here; then the process dies: no commit
        found += run.gaps
    assert [g.reason for g in found] == ["expired before it could be fetched"]
    assert await env.status(EXO) == {} and await env.cursor(EXO) is None
    out = (await env.run(EXO))[EXO]  # the next pass, as after a restart
    assert len(out.new_gaps) == 1 and out.gaps_total == 1
    await _assert_gap(env, "stale", "expired before it could be fetched")


async def test_a_pacing_slot_is_taken_with_the_token_in_hand(env: Env, monkeypatch: pytest.MonkeyPatch):
    """Microsoft counts requests as they arrive. A slot taken before the token (a fetch or renewal
    from Entra, seconds on a slow day) sent that request late, right before the next slot's: two
    arrivals closer than the quota's spacing."""
    events: list[str] = []
    token, acquire = env.tokens.token, env.limiter.acquire

    async def fetch_token() -> str:
        events.append("token")
        return await token()

    async def slot() -> None:
        events.append("slot")
        await acquire()

    monkeypatch.setattr(env.tokens, "token", fetch_token)
    monkeypatch.setattr(env.limiter, "acquire", slot)
    for i in range(3):
        env.fake.add(f"b{i}", EXO_CT, NOW - 2 * H + i * timedelta(minutes=1))
    assert (await env.run(EXO))[EXO].ok
    assert events and events == ["token", "slot"] * (len(events) // 2), events
