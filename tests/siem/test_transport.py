"""`agent.siem.transport`: how a SIEM's HTTP answers become retries, the agent's errors and counters,
and how a backfill writer's POSTs are paced."""

from __future__ import annotations

import pytest

from agent.errors import ThrottledError, TransientApiError
from agent.http import RateLimiter
from agent.siem.base import IncompleteResult, SendResult, SiemError
from agent.siem.transport import SiemHttp, WriterHttp, classify, error_text, limiter_for
from tests.siem.fakes import FakeHttp, Sleeps, answer, siem

URL = "https://siem.test/query?code=secret-in-query"


def _transport(http: FakeHttp, sleeps: Sleeps, attempts: int = 3, **kw: object) -> SiemHttp:
    async def headers() -> dict[str, str]:
        return {"Authorization": "Bearer t"}

    return SiemHttp(http, headers, attempts=attempts, sleep=sleeps, **kw)  # type: ignore[arg-type]


async def test_a_429_waits_its_retry_after_then_succeeds() -> None:
    throttled = answer(429, {"error": {"code": "Throttled"}}, {"Retry-After": "7"})
    http, sleeps = FakeHttp([throttled, answer(200, b"{}")]), Sleeps()
    t = _transport(http, sleeps)
    resp = await t.send("POST", URL, body=b"q")
    assert resp.status == 200 and sleeps.calls == [7.0]
    assert t.stats.queries == 2 and t.stats.bytes == len(b'{"error":{"code":"Throttled"}}') + 2
    assert http.sent[0].headers["Authorization"] == "Bearer t" and http.sent[0].data == b"q"


async def test_server_faults_are_retried_until_the_attempts_run_out() -> None:
    http, sleeps = FakeHttp([answer(503, b"busy")], repeat_last=True), Sleeps()
    t = _transport(http, sleeps, attempts=4)
    with pytest.raises(TransientApiError, match="answered 503: busy"):
        await t.send("GET", URL)
    assert t.stats.queries == 4 and len(sleeps.calls) == 3


@pytest.mark.parametrize("status", [408, 500, 502, 503])
async def test_transient_statuses_are_retried_and_then_answered(status: int) -> None:
    http, sleeps = FakeHttp([answer(status), answer(200, b"ok")]), Sleeps()
    assert (await _transport(http, sleeps).send("GET", URL)).body == b"ok"


async def test_a_dropped_connection_is_retried() -> None:
    http, sleeps = FakeHttp([TransientApiError("connection reset"), answer(200, b"ok")]), Sleeps()
    assert (await _transport(http, sleeps).send("GET", URL)).body == b"ok"


async def test_a_rejected_token_is_renewed_once_and_the_query_resent() -> None:
    renewed: list[bool] = []

    async def renew() -> None:
        renewed.append(True)

    http, sleeps = FakeHttp([answer(401, {"error": {"code": "InvalidToken", "message": "expired"}}),
                             answer(200, b"ok")]), Sleeps()
    assert (await _transport(http, sleeps, on_token_rejected=renew).send("GET", URL)).body == b"ok"
    assert renewed == [True]


async def test_a_timed_out_query_is_incomplete_and_not_resent_as_is() -> None:
    """504: the query ran out of time; the engine splits the bucket (never reads it as "missing")."""
    http, sleeps = FakeHttp([answer(504, {"error": {"code": "GatewayTimeout", "message": "took too long"}})]), Sleeps()
    with pytest.raises(IncompleteResult, match="timed out") as err:
        await _transport(http, sleeps).send("POST", URL)
    assert err.value.splittable and len(http.sent) == 1 and sleeps.calls == []


async def test_a_refusal_is_a_siem_error_with_the_reason_and_no_secret() -> None:
    http, sleeps = FakeHttp([answer(400, {"error": {"code": "BadArgumentError", "message": "bad query",
                                                    "innererror": {"message": "column X unknown"}}})]), Sleeps()
    with pytest.raises(SiemError) as err:
        await _transport(http, sleeps).send("POST", URL)
    text = str(err.value)
    assert "answered 400: BadArgumentError: bad query: column X unknown" in text and "secret-in-query" not in text
    assert not isinstance(err.value, IncompleteResult) and len(http.sent) == 1


async def test_statuses_the_caller_expects_are_returned() -> None:
    http = FakeHttp([answer(404, b"{}")])
    assert (await _transport(http, Sleeps()).send("POST", URL, ok=(200, 404))).status == 404


def test_classify_maps_each_status_to_the_error_tree() -> None:
    throttled = classify(answer(429, b"slow down", {"Retry-After": "3"}), URL)
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 3.0
    assert isinstance(classify(answer(504), URL), IncompleteResult)
    assert isinstance(classify(answer(502), URL), TransientApiError)
    assert type(classify(answer(403), URL)) is SiemError


def test_error_text_reads_each_vendors_error_body() -> None:
    assert error_text(answer(400, {"messages": [{"type": "FATAL", "text": "Unknown search command 'x'"}]})) \
        == "Unknown search command 'x'"  # Splunk
    assert error_text(answer(400, {"error": {"type": "parsing_exception", "reason": "bad"}})) == "bad"  # Elastic
    assert error_text(answer(502, b"<html>" + b"x" * 1000), limit=20) == "<html>" + "x" * 14
    assert error_text(answer(400, [1, 2])) == "[1,2]"


def test_backfill_rate_becomes_a_pacer() -> None:
    assert limiter_for(0) is None
    assert limiter_for(10) is not None and limiter_for(0.5) is not None


async def test_a_writers_post_counts_requests_and_reports_a_dropped_connection_as_no_answer() -> None:
    http = FakeHttp([answer(204), TransientApiError("reset after the body went out")])
    writer = WriterHttp(siem("elastic"), http)  # type: ignore[arg-type]
    result = SendResult()
    assert (await writer.post("https://es.test/_bulk", {}, b"x", result)) is not None
    assert await writer.post("https://es.test/_bulk", {}, b"x", result) is None  # the body may have arrived
    assert result.requests == 2 and writer.whole("graph.directory_audits", {}) is True


async def test_a_writers_pause_honours_retry_after() -> None:
    sleeps = Sleeps()
    writer = WriterHttp(siem("elastic"), FakeHttp([]), sleep=sleeps)  # type: ignore[arg-type]
    await writer.pause(answer(429, headers={"Retry-After": "2"}), 0)
    await writer.pause(None, 3)
    assert sleeps.calls[0] == 2.0 and 0 <= sleeps.calls[1] <= 2.0


async def test_a_pacing_slot_is_taken_with_the_token_in_hand() -> None:
    """The SIEM counts requests as they arrive: a slot taken before the token (fetched from Entra
    for Sentinel) sent the request late, right before the next slot's."""
    events: list[str] = []

    async def headers() -> dict[str, str]:
        events.append("token")
        return {"Authorization": "Bearer t"}

    class Recorded(RateLimiter):
        async def acquire(self) -> None:
            events.append("slot")
            await super().acquire()

    http, sleeps = FakeHttp([answer(503), answer(200, b"ok")]), Sleeps()
    t = SiemHttp(http, headers, attempts=3, sleep=sleeps, limiter=Recorded(1000, 1.0))  # type: ignore[arg-type]
    assert (await t.send("GET", URL)).body == b"ok"
    assert events == ["token", "slot", "token", "slot"]
