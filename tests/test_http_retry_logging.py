"""Retries that recover are routine: INFO and a counter. WARNING only when retries run out (a
service log was 48 WARNING lines in 105, every one recovered)."""

from __future__ import annotations

import logging

import pytest

from agent.errors import ThrottledError, TransientApiError
from agent.http import EXHAUSTED, RETRIES, with_retries
from agent.service.metrics import Metrics
from tests.service.harness import Metrics as Scraped


async def _no_sleep(_: float) -> None:
    return None


async def test_recovered_retries_are_info_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.http")
    before = RETRIES["ThrottledError"]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ThrottledError("slow down", retry_after=0.0)
        return "ok"

    assert await with_retries(flaky, attempts=5, what="t", sleep=_no_sleep) == "ok"
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    assert RETRIES["ThrottledError"] == before + 2
    scraped = Scraped.parse(Metrics().render().decode())
    assert scraped.get("agent_http_retries_total", reason="ThrottledError") == before + 2


async def test_retries_that_run_out_are_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.http")
    before = EXHAUSTED["TransientApiError"]

    async def always() -> str:
        raise TransientApiError("connection to https://graph.example/v1.0 failed: [Errno 111] refused")

    with pytest.raises(TransientApiError):
        await with_retries(always, attempts=3, what="tenant/graph.signins.interactive", sleep=_no_sleep)
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.INFO, logging.INFO, logging.WARNING]
    assert caplog.records[-1].getMessage() == "Request failed; retries exhausted."
    assert "Errno 111" in caplog.records[-1].fields["error"]  # type: ignore[attr-defined]
    assert EXHAUSTED["TransientApiError"] == before + 1
    scraped = Scraped.parse(Metrics().render().decode())
    assert scraped.get("agent_http_retries_exhausted_total", reason="TransientApiError") == before + 1
