"""SIEM query endpoints answering with errors during reconcile: Log Analytics `query`, Splunk
export, Elasticsearch `_pit`/`_search` (the emulated SIEMs, over HTTPS, with a fault middleware in
front). Reconcile either retries to completion or reports the window unverified; it never reports
a record missing because the SIEM failed, and never quotes a credential back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from agent.config import HttpConfig
from agent.http import HttpClient
from agent.logs import register_secret
from agent.reconcile.engine import Options, reconcile
from agent.siem.base import Siem
from agent.siem.elastic.reader import ElasticSiem
from agent.siem.sentinel.reader import SentinelSiem
from agent.siem.splunk.reader import SplunkSiem
from tests.faults.matrix import BY_KEY, RETRIED, SIEM_KINDS, UNVERIFIED
from tests.siem.fixtures import TENANT, Scenario, make_tls, serve
from tests.siem.harness import ELASTIC_KEY, SPLUNK_TOKEN, _static, emulator_app, siem_config

END = datetime(2026, 3, 2, tzinfo=UTC)
START = END - timedelta(hours=6)
NOW = END + timedelta(hours=8)
STREAM = "o365.exchange"
LA_TOKEN = "la-token-secret-4242"
SECRETS = {"sentinel": LA_TOKEN, "splunk": SPLUNK_TOKEN, "elastic": ELASTIC_KEY}


@dataclass
class Injected:
    status: int
    body: bytes
    content_type: str
    remaining: int  # answers still to spoil; -1 = all
    hits: int = 0


def fault_for(kind: str, fault: str) -> tuple[int, bytes, str]:
    secret = SECRETS[kind]
    if fault == "json":
        return 200, b'{"tables": [{"rows": [["' + secret.encode(), "application/json"
    if fault == "html":
        return 200, f"<html><body>Proxy error for {secret}</body></html>".encode(), "text/html"
    status = int(fault)
    body = {"error": {"code": "Injected", "message": f"refused token {secret}"}}
    return status, orjson.dumps(body), "application/json"


def middleware(kind: str, injected: Injected) -> Callable[..., object]:
    @web.middleware
    async def spoil(request: web.Request, handler: Handler) -> web.StreamResponse:
        query = request.method == "POST" and (kind == "elastic" or request.path.endswith(("/query", "/export")))
        if query and injected.remaining != 0:
            injected.remaining -= 1 if injected.remaining > 0 else 0
            injected.hits += 1
            return web.Response(status=injected.status, body=injected.body, content_type=injected.content_type,
                                headers={"Retry-After": "0"})
        return await handler(request)

    return spoil


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.http.backoff", lambda *a, **k: 0.0)


CASES = [(key.split(".")[1], key.split(".")[2], key.split(".")[3]) for key in BY_KEY if key.startswith("siem.")]


@pytest.mark.parametrize(("kind", "fault", "mode"), CASES, ids=[".".join(c) for c in CASES])
async def test_siem_errors_never_read_as_missing_records(kind: str, fault: str, mode: str, tmp_path: Path,
                                                        outcome: Callable[[str, str], None]) -> None:
    scn = Scenario(START, END, {STREAM: 40}).generate()
    archive = await scn.archive(tmp_path / "store")
    status, body, ctype = fault_for(kind, fault)
    injected = Injected(status, body, ctype, 1 if mode == "once" else -1)
    app = emulator_app(kind, scn.copy())
    if kind == "sentinel":  # the harness' app checks a fixed token; ours is a registered secret
        from emulator.siems import loganalytics as la_emu

        app = la_emu.app(scn.copy(), token_ok=lambda t: t == LA_TOKEN)
    app.middlewares.append(middleware(kind, injected))  # type: ignore[arg-type]
    register_secret(SECRETS[kind])  # as agent.siem.open_siem and agent.auth do
    tls = make_tls(tmp_path)
    async with serve(app, tls) as url, HttpClient(HttpConfig(ca_file=tls.ca_file)) as http:
        cfg = siem_config(kind, url)
        siem: Siem
        if kind == "sentinel":
            siem = SentinelSiem(cfg, http, _static(LA_TOKEN))
        elif kind == "splunk":
            siem = SplunkSiem(cfg, http, _static(SPLUNK_TOKEN))
        else:
            siem = ElasticSiem(cfg, http, _static(ELASTIC_KEY))
        try:
            report = await reconcile(None, archive, siem, [(TENANT, STREAM)], START, END, now=NOW,
                                     options=Options(full=True), siem_name=kind)
        finally:
            await siem.aclose()
    assert injected.hits >= 1
    [s] = report.streams
    assert not s.missing_in_siem and not s.missing_in_agent and not s.gaps, "a SIEM error read as missing records"
    text = report.to_json().decode()
    assert SECRETS[kind] not in text
    if report.complete:
        assert s.agent_count == s.siem_count == 40
        seen = RETRIED
    else:
        assert s.unverified and all(b.unverified for b in s.buckets)
        seen = UNVERIFIED
    assert SIEM_KINDS[kind]
    outcome(f"siem.{kind}.{fault}.{mode}", seen)
