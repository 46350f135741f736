"""Graph's error table: every answer the list requests can meet maps to one action, in the order the
old if-chain decided it (429 and 401 whatever the code; then a licence code at any status; then the
status; an unknown 5xx is retried, anything else is fatal)."""

from __future__ import annotations

import orjson
import pytest

from agent.errors import AgentError, ApiError, LicenseError, ThrottledError, TokenRejected, TransientApiError
from agent.http import Response
from agent.sources.graph.source import (
    CODE_ACTIONS,
    DEFAULT_THROTTLE_WAIT,
    STATUS_ACTIONS,
    STATUS_FIRST,
    Action,
    action_for,
    classify,
)

LICENCE = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# (status, code) -> the error the old chain raised; every branch of it and the orders between them.
CASES: list[tuple[int, str, type[AgentError]]] = [
    (429, "", ThrottledError), (429, LICENCE, ThrottledError),  # throttling wins over a licence code
    (401, "", TokenRejected), (401, LICENCE, TokenRejected),  # as does a rejected token
    (403, LICENCE, LicenseError), (403, "AadPremiumLicenseRequired", LicenseError),
    (400, LICENCE, LicenseError), (500, LICENCE, LicenseError),  # a licence code at any other status
    (403, "Authorization_RequestDenied", ApiError), (403, "", ApiError),
    (408, "", TransientApiError), (500, "x", TransientApiError), (502, "", TransientApiError),
    (503, "", TransientApiError), (504, "", TransientApiError), (501, "", TransientApiError),
    (599, "", TransientApiError),  # any other 5xx
    (400, "BadRequest", ApiError), (404, "", ApiError), (409, "", ApiError), (201, "", ApiError),
]


def resp(status: int, code: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": "m"}}) if code else b"<html>busy</html>"
    return Response(status, headers or {}, body, "https://graph.test/beta/auditLogs/signIns")


@pytest.mark.parametrize(("status", "code", "error"), CASES)
def test_each_answer_raises_what_the_chain_did(status: int, code: str, error: type[AgentError]) -> None:
    with pytest.raises(AgentError) as raised:
        classify(resp(status, code), "graph.signins.interactive")
    assert type(raised.value) is error
    if isinstance(raised.value, ApiError):
        assert raised.value.status == status and raised.value.code == code


def test_throttling_waits_retry_after_or_the_documented_ten_seconds() -> None:
    with pytest.raises(ThrottledError) as told:
        classify(resp(429, "TooManyRequests", {"Retry-After": "7"}), "s")
    assert told.value.retry_after == 7
    with pytest.raises(ThrottledError) as silent:
        classify(resp(429, "TooManyRequests"), "s")
    assert silent.value.retry_after == DEFAULT_THROTTLE_WAIT
    with pytest.raises(TransientApiError) as busy:
        classify(resp(503, "", {"Retry-After": "4"}), "s")
    assert busy.value.retry_after == 4


def test_every_entry_of_the_tables_is_reached() -> None:
    for status, action in STATUS_FIRST.items():
        assert action_for(status, LICENCE) is action
    for code, action in CODE_ACTIONS.items():
        assert action_for(400, code) is action
    for status, action in STATUS_ACTIONS.items():
        assert action_for(status, "") is action
    assert action_for(550, "") is Action.RETRY and action_for(418, "") is Action.FATAL
