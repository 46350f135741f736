"""A webhook that cannot be reached is itself an alarm: a metric, `/readyz`, and a log line with
the host and the operating system's reason (never the webhook's secret path)."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from agent.config import (
    AlertsConfig,
    Config,
    Credential,
    HttpConfig,
    LocalStoreConfig,
    Secret,
    ServiceConfig,
    TenantConfig,
    Webhook,
)
from agent.http import HttpClient
from agent.service.alerts import Alert, Alerter
from agent.service.metrics import Metrics
from agent.service.supervisor import Service
from agent.store.local import LocalStore
from tests.service.harness import Metrics as Scraped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: a connection is refused


async def test_failed_delivery_counts_names_host_and_errno_and_marks_not_ready(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret_path = "T0001/B0001/not-a-real-webhook-secret"
    (tmp_path / "hook").write_text(f"http://127.0.0.1:{_closed_port()}/services/{secret_path}")
    cfg = AlertsConfig(webhooks=(Webhook("slack", Secret(f"file:{tmp_path / 'hook'}"), name="secops"),))
    metrics = Metrics()
    caplog.set_level(logging.INFO, logger="agent.service.alerts")
    async with HttpClient(HttpConfig()) as http:
        alerter = Alerter(cfg, http, LocalStore(tmp_path / "store"), metrics)
        assert not await alerter.send(Alert("siem_gap", "siem_gap:x", "SIEM lost records", "3 missing"))
        svc = Service(Config(tenants=(TenantConfig(id="6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", client_id="c",
                                                   credential=Credential(), name="contoso"),),
                             store=LocalStoreConfig(path=tmp_path / "store"),
                             service=ServiceConfig(listen="127.0.0.1:0", notices=False)))
        svc.alerter = alerter
        resp = await svc.server.readyz()
    scraped = Scraped.parse(metrics.render().decode())
    assert scraped.get("agent_alerts_failed_total", kind="siem_gap", webhook="secops") == 1
    assert resp.status == 503
    body = orjson.loads(resp.body)  # type: ignore[arg-type]
    assert any("alerts: webhook secops failing: 127.0.0.1" in p and "Errno 111" in p for p in body["problems"])
    assert body["tenants"] == {"contoso": "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"}
    final = [r for r in caplog.records if r.getMessage() == "Alert could not be delivered."]
    assert len(final) == 1 and final[0].levelno == logging.ERROR
    fields = final[0].fields  # type: ignore[attr-defined]
    assert fields["host"] == "127.0.0.1" and "Errno 111" in fields["reason"]
    retries = [r for r in caplog.records if r.getMessage() == "Alert delivery failed, retrying."]
    assert retries and all(r.levelno == logging.INFO for r in retries)
    assert secret_path not in caplog.text and secret_path not in resp.text  # type: ignore[attr-defined]


async def test_a_later_delivery_clears_the_failing_state(tmp_path: Path) -> None:
    calls: list[int] = []

    async def hook(_: web.Request) -> web.Response:
        calls.append(1)
        return web.Response(status=503 if len(calls) <= 4 else 200)  # the first alert's 4 attempts fail

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    (tmp_path / "hook").write_text(f"http://127.0.0.1:{port}/hook")
    cfg = AlertsConfig(webhooks=(Webhook("generic", Secret(f"file:{tmp_path / 'hook'}")),))
    try:
        async with HttpClient(HttpConfig()) as http:
            alerter = Alerter(cfg, http, LocalStore(tmp_path / "store"))
            assert not await alerter.send(Alert("window_failed", "k1", "t", "x"))
            assert alerter.failing == {"generic": "127.0.0.1: HTTP 503"}
            assert await alerter.send(Alert("window_failed", "k2", "t", "x"))
            assert alerter.failing == {}
    finally:
        await runner.cleanup()
