"""Every documented Management Activity API error code (protocols.md §2.6) plus 401/408/5xx,
HTML and malformed bodies, looping NextPageUri and clock skew, against the in-process TLS fake
of tests/sources/management_activity driven through the real Collector: the documented action, and what
it leaves behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from tests.faults.matrix import _FATAL, FAILURE, GAP, RETRIED
from tests.sources.management_activity.conftest import NOW, TENANT, Env, Fault

EXO, EXO_CT = "o365.exchange", "Audit.Exchange"
H = timedelta(hours=1)
HTML = (b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
        b"<body><h2>Service Unavailable</h2></body></html>")


async def stored_ids(env: Env) -> set[str]:
    return {r["Id"] for r in await env.records(EXO)}


async def assert_held(env: Env, cursor_before: object, needle: str, not_past: datetime | None = None) -> None:
    """The pass fails naming `needle`; the cursor stays put (or, on a first pass, stops before `not_past`)."""
    out = (await env.run(EXO))[EXO]
    assert not out.ok and out.error and needle in out.error, out
    cursor = await env.cursor(EXO)
    if not_past is not None and cursor_before is None:
        assert cursor is None or cursor <= not_past
    else:
        assert cursor == cursor_before
    status = await env.status(EXO)
    assert needle in (status.get("last_error") or "")


@pytest.mark.parametrize("code", sorted(_FATAL))
async def test_fatal_codes_fail_the_pass_with_a_clear_error_and_hold_the_cursor(
        env: Env, code: str, outcome: Callable[[str, str], None]) -> None:
    status, _, target = _FATAL[code]
    if target == "start":  # only a subscription start can be refused with these
        env.fake.subscriptions.pop(EXO_CT)
        env.fake.always["start"] = Fault(status, code)
        env.fake.add("a", EXO_CT, NOW - 2 * H)
        await assert_held(env, None, code)
        assert await stored_ids(env) == set()
    else:
        env.fake.add("a", EXO_CT, NOW - 2 * H)
        first = (await env.run(EXO))[EXO]
        assert first.ok, first.error
        before = await env.cursor(EXO)
        assert before is not None
        env.clock.advance(2 * H)
        env.fake.add("b", EXO_CT, NOW + H)
        env.fake.always[target] = Fault(status, code)
        sent = len(env.fake.requests)
        await assert_held(env, before, code)
        assert await stored_ids(env) == {"a-r0", "a-r1"}
        if status != 401:  # fatal: asked once, never retried (401 means "new token" whatever the code)
            assert sum(1 for r in env.fake.requests[sent:] if target in r.path or
                       (target == "blob" and "/audit/" in r.path)) == 1
    outcome(f"mgmt.{code}", FAILURE)


RETRIED_ONCE: dict[str, tuple[int, str | None, bytes | None]] = {
    "AF429.403": (403, "AF429", None), "AF429.429": (429, "AF429", None),
    "AF50000": (500, "AF50000", None), "AF50005": (500, "AF50005", None), "AF50006": (500, "AF50006", None),
    "401": (401, None, None), "408": (408, None, None), "500": (500, None, None), "502": (502, None, None),
    "503": (503, None, None), "504": (504, None, None), "html": (503, None, HTML),
    "malformed": (200, None, b'[{"contentType": "Audit.Exchange", "contentId": '),
    "AF20050.once": (404, "AF20050", None),
}


@pytest.mark.parametrize("key", sorted(RETRIED_ONCE))
async def test_transient_answers_are_retried_to_completion(env: Env, key: str,
                                                           outcome: Callable[[str, str], None]) -> None:
    status, code, body = RETRIED_ONCE[key]
    env.fake.add("a", EXO_CT, NOW - 3 * H)
    env.fake.add("b", EXO_CT, NOW - 2 * H)
    if key != "AF20050.once":
        env.fake.fail("content", status, code, body=body)
    env.fake.fail("blob", status, code, body=body)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert await stored_ids(env) == {"a-r0", "a-r1", "b-r0", "b-r1"}
    assert not env.fake.faults["blob"] and not env.fake.faults["content"]  # every fault was met
    outcome(f"mgmt.{key}", RETRIED)


async def test_af20022_while_listing_restarts_the_subscription(env: Env, outcome: Callable[[str, str], None]) -> None:
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    env.fake.fail("content", 400, "AF20022")
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert env.fake.count("POST", "/subscriptions/start") == 1
    assert await stored_ids(env) == {"a-r0", "a-r1"}
    outcome("mgmt.AF20022", RETRIED)


async def test_af20024_on_start_counts_as_enabled(env: Env, outcome: Callable[[str, str], None]) -> None:
    env.fake.subscriptions[EXO_CT] = "disabled"  # listed as off: the agent starts it
    env.fake.fail("start", 400, "AF20024")
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert await stored_ids(env) == {"a-r0", "a-r1"}
    outcome("mgmt.AF20024", RETRIED)


async def test_af20030_from_a_server_clock_ahead_is_relisted(env: Env, outcome: Callable[[str, str], None]) -> None:
    await env.source.client.ensure_subscription(EXO_CT, EXO)  # learned while the clocks agreed
    env.fake.skew = timedelta(minutes=10)  # then the API's clock runs 10 min ahead of ours
    env.fake.add("edge", EXO_CT, NOW - timedelta(hours=167, minutes=40))
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert "a-r0" in await stored_ids(env)
    starts = [r.query["startTime"] for r in env.fake.requests if r.path.endswith("/content")]
    assert starts[1] > starts[0]  # the refused first listing was re-sent on the API's clock
    outcome("mgmt.AF20030", RETRIED)


async def test_af20055_with_a_skewed_date_is_relisted(env: Env, outcome: Callable[[str, str], None]) -> None:
    await env.source.client.ensure_subscription(EXO_CT, EXO)
    env.fake.skew = -timedelta(minutes=10)
    env.fake.fail("content", 400, "AF20055")
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert await stored_ids(env) == {"a-r0", "a-r1"}
    assert abs(env.source.clock_offset + timedelta(minutes=10)) < timedelta(seconds=5)
    outcome("mgmt.AF20055", RETRIED)


async def test_af20031_restarts_the_listing(env: Env, outcome: Callable[[str, str], None]) -> None:
    env.fake.page_size = 1
    for i in range(3):
        env.fake.add(f"p{i}", EXO_CT, NOW - (3 - i) * H)
    env.fake.fail("next", 400, "AF20031")
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert await stored_ids(env) == {f"p{i}-r{j}" for i in range(3) for j in range(2)}
    outcome("mgmt.AF20031", RETRIED)


async def test_af20051_is_a_recorded_gap(env: Env, outcome: Callable[[str, str], None]) -> None:
    env.fake.add("fine", EXO_CT, NOW - 3 * H)
    gone = env.fake.add("gone", EXO_CT, NOW - 2 * H)
    env.fake.fail("blob:gone", 400, "AF20051")
    out = (await env.run(EXO))[EXO]
    assert len(out.new_gaps) == 1 and not out.ok and out.error is None
    assert [g["content_id"] for g in (await env.status(EXO))["gaps"]] == [gone.content_id]
    assert any(g["content_id"] == gone.content_id for x in await env.ledgers(EXO) for g in x.get("gaps", []))
    assert await stored_ids(env) == {"fine-r0", "fine-r1"}
    outcome("mgmt.AF20051", GAP)


async def test_af20050_until_expiry_fails_then_becomes_a_gap(env: Env, outcome: Callable[[str, str], None]) -> None:
    blob = env.fake.add("late", EXO_CT, NOW - 2 * H, expiration=NOW + H)
    env.fake.always["blob:late"] = Fault(404, "AF20050")
    out = (await env.run(EXO))[EXO]
    assert out.error_kind == "BlobUnavailable" and not out.new_gaps  # still fetchable later: not a gap yet
    cursor = await env.cursor(EXO)
    assert cursor is None or cursor <= blob.created  # earlier windows may complete; never past the blob
    env.clock.advance(2 * H)  # the blob expires
    out = (await env.run(EXO))[EXO]
    assert len(out.new_gaps) == 1 and not out.ok
    assert [g["content_id"] for g in (await env.status(EXO))["gaps"]] == [blob.content_id]
    outcome("mgmt.AF20050.expired", GAP)


def _loop_link(env: Env, token: str) -> str:
    return (f"{env.fake.base}/api/v1/{TENANT}/activity/feed/subscriptions/content?contentType={EXO_CT}"
            f"&startTime=x&endTime=y&nextPage={token}")


async def test_a_looping_next_page_uri_stops_with_a_clear_error(env: Env,
                                                               outcome: Callable[[str, str], None]) -> None:
    env.fake.page_size = 1
    env.fake.add("a", EXO_CT, NOW - 3 * H)
    env.fake.add("b", EXO_CT, NOW - 2 * H)
    entry = env.fake._entry(env.fake.blobs[1])
    import orjson

    env.fake.always["next"] = Fault(200, body=orjson.dumps([entry]),
                                    headers={"Content-Type": "application/json", "NextPageUri": _loop_link(env, "B")})
    await assert_held(env, None, "NextPageUri repeats itself", NOW - 3 * H)
    assert env.fake.count("GET", "/subscriptions/content") < 40  # bounded: a few windows, 3 pages each
    outcome("mgmt.nextpage_loop", FAILURE)


async def test_empty_pages_repeating_their_link_forever_give_up(env: Env,
                                                               outcome: Callable[[str, str], None]) -> None:
    env.fake.page_size = 1
    env.fake.add("a", EXO_CT, NOW - 3 * H)
    env.fake.add("b", EXO_CT, NOW - 2 * H)
    link = _loop_link(env, "E")
    env.fake.always["next"] = Fault(200, body=b"[]", headers={"Content-Type": "application/json", "NextPageUri": link})
    await assert_held(env, None, "empty pages in a row", NOW - 3 * H)
    outcome("mgmt.nextpage_stalled", FAILURE)


async def test_agent_clock_behind_the_server_follows_the_servers_date(env: Env,
                                                                      outcome: Callable[[str, str], None]) -> None:
    env.fake.skew = 2 * H  # our clock is 2 h behind the API's
    env.fake.add("future", EXO_CT, NOW + H + timedelta(minutes=30))  # 30 min old by the API's clock
    env.fake.add("a", EXO_CT, NOW - 2 * H)
    out = (await env.run(EXO))[EXO]
    assert out.ok, out.error
    assert await stored_ids(env) == {"a-r0", "a-r1", "future-r0", "future-r1"}
    assert abs(env.source.clock_offset - 2 * H) < timedelta(seconds=5)
    outcome("mgmt.skew", RETRIED)
