"""PagerDuty (Events API v2) and e-mail (SMTP) alert channels, each against a real local server:
an HTTPS endpoint that records the event's JSON, and a small SMTP server (EHLO, STARTTLS, AUTH
PLAIN, MAIL, RCPT, DATA) written here, so the message that arrives is the one asserted."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

import agent.service.alerts as alerts_module
from agent import config
from agent.errors import ConfigError
from agent.http import HttpClient
from agent.service.alerts import Alert, Alerter
from agent.service.metrics import Metrics
from agent.store.local import LocalStore
from emulator.runtime import tls
from tests.service.harness import Metrics as Scraped

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
ROUTING_KEY = "R0UT1NGKEY-not-a-real-integration-key"
PASSWORD = "smtp-pass-not-real-7f3a"
GAP = Alert("siem_gap", f"siem_gap:{TENANT}:graph.signins.interactive:1:2", "The SIEM is missing records",
            "32 records are in the archive but not in the SIEM.",
            fields={"tenant": "contoso", "tenant_id": TENANT, "stream": "graph.signins.interactive",
                    "missing": 32})


def _config(tmp_path: Path, alerts_toml: str) -> config.Config:
    (tmp_path / "secret").write_text("client-secret\n")
    (tmp_path / "pd-key").write_text(ROUTING_KEY + "\n")
    (tmp_path / "smtp-pass").write_text(PASSWORD + "\n")
    text = f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"

[store]
type = "local"
path = "archive"

{alerts_toml}
"""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return config.parse(tomllib.loads(text), path)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> tls.Material:
    return tls.make(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_module, "backoff", lambda *a, **k: 0.0)


# --- PagerDuty -------------------------------------------------------------------------------

@pytest.fixture
async def pagerduty(material: tls.Material) -> AsyncIterator[tuple[str, list[Any]]]:
    events: list[Any] = []

    async def enqueue(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        events.append(await request.json())
        # The documented answer to an accepted event (HTTP 202).
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": events[-1].get("dedup_key")}, status=202)

    app = web.Application()
    app.router.add_post("/v2/enqueue", enqueue)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=material.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/v2/enqueue", events
    finally:
        await runner.cleanup()


async def test_pagerduty_trigger_event_has_the_documented_shape(
        tmp_path: Path, material: tls.Material, pagerduty: tuple[str, list[Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    url, events = pagerduty
    cfg = _config(tmp_path, f"""
[[alerts.webhooks]]
kind = "pagerduty"
name = "oncall"
routing_key_file = "pd-key"
url = "{url}"
""")
    caplog.set_level(logging.DEBUG)
    async with HttpClient(config.HttpConfig(ca_file=material.ca_file)) as http:
        alerter = Alerter(cfg.alerts, http, LocalStore(tmp_path / "store"))
        assert await alerter.send(GAP)
    [sent] = events
    timestamp = sent["payload"].pop("timestamp")
    assert timestamp.endswith("Z")
    assert sent == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": GAP.key,
        "client": "ms-log-agent",
        "payload": {
            "summary": "The SIEM is missing records: 32 records are in the archive but not in the SIEM.",
            "source": socket.gethostname(),
            "severity": "error",
            "component": "graph.signins.interactive",
            "group": "contoso",
            "class": "siem_gap",
            "custom_details": {**GAP.fields, "key": GAP.key, "text": GAP.text},
        },
    }
    assert ROUTING_KEY not in caplog.text


def test_pagerduty_severity_and_limits() -> None:
    lost = Alert("agent_gap", "agent_gap:" + "x" * 300, "Records expired unfetched", "y" * 2000,
                 link="https://example.invalid/d")
    event = lost.pagerduty("k")
    assert event["payload"]["severity"] == "critical"  # records lost for good
    assert len(event["dedup_key"]) <= 255 and event["dedup_key"].startswith("agent_gap:")
    assert event["payload"]["custom_details"]["key"] == lost.key
    assert len(event["payload"]["summary"]) == 1024
    assert event["links"] == [{"href": "https://example.invalid/d", "text": "Details"}]
    notice = Alert("service_notice", "n", "t", "x", severity="warning")
    assert notice.pagerduty("k")["payload"]["severity"] == "warning"


async def test_pagerduty_refusal_is_a_visible_failure(tmp_path: Path, material: tls.Material,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"status": "invalid event", "errors": ["routing_key invalid"]}, status=400)

    app = web.Application()
    app.router.add_post("/v2/enqueue", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=material.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cfg = _config(tmp_path, f"""
[[alerts.webhooks]]
kind = "pagerduty"
routing_key_env = "PD_KEY"
url = "https://127.0.0.1:{port}/v2/enqueue"
""")
    metrics = Metrics()
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    try:
        async with HttpClient(config.HttpConfig(ca_file=material.ca_file)) as http:
            alerter = Alerter(cfg.alerts, http, LocalStore(tmp_path / "store"), metrics)
            assert not await alerter.send(GAP)
    finally:
        await runner.cleanup()
    assert alerter.failing == {"pagerduty": "127.0.0.1: HTTP 400"}
    assert Scraped.parse(metrics.render().decode()).get("agent_alerts_failed_total", kind="siem_gap",
                                                        webhook="pagerduty") == 1


# --- SMTP ------------------------------------------------------------------------------------

@dataclass
class Smtp:
    """What the test server saw: one entry per message accepted, plus the credentials offered."""

    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


async def _smtp_server(smtp: Smtp, *, implicit: ssl.SSLContext | None = None,
                       starttls: ssl.SSLContext | None = None) -> asyncio.Server:
    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        mail_from, secure = "", implicit is not None
        rcpts: list[str] = []
        reply("220 test ESMTP")
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            verb = line.split(" ", 1)[0].upper()
            smtp.commands.append(verb)
            if verb == "EHLO":
                extensions = ["STARTTLS"] if starttls and not secure else []
                extensions += ["AUTH PLAIN"] if secure else []
                lines = ["test", *extensions]  # the first line is the greeting, then one extension a line
                for i, text in enumerate(lines):
                    reply(f"250{'-' if i < len(lines) - 1 else ' '}{text}")
            elif verb == "STARTTLS" and starttls:
                reply("220 go ahead")
                await writer.drain()
                await writer.start_tls(starttls)
                secure = True
            elif verb == "AUTH":
                _, user, password = base64.b64decode(line.split()[2]).split(b"\0")
                smtp.logins.append((user.decode(), password.decode()))
                reply("235 ok")
            elif verb == "MAIL":
                mail_from, rcpts = line[10:].strip("<>").split(">")[0], []
                reply("250 ok")
            elif verb == "RCPT":
                rcpts.append(line[8:].strip("<>").split(">")[0])
                reply("250 ok")
            elif verb == "DATA":
                reply("354 end with .")
                await writer.drain()
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                smtp.messages.append((mail_from, rcpts, data))
                reply("250 queued")
            elif verb == "QUIT":
                reply("221 bye")
                await writer.drain()
                break
            else:
                reply("502 not implemented")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0, ssl=implicit)
    smtp.port = server.sockets[0].getsockname()[1]
    return server


def _email_toml(port: int, tls_mode: str, auth: bool = True) -> str:
    creds = 'username = "alerts@contoso.example"\npassword_file = "smtp-pass"\n' if auth else ""
    return f"""
[[alerts.email]]
name = "secops-mail"
host = "127.0.0.1"
port = {port}
tls = "{tls_mode}"
from = "ms-log-agent@contoso.example"
to = ["secops@contoso.example", "soc@contoso.example"]
{creds}"""


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_email_is_delivered_over_tls_with_login(tmp_path: Path, material: tls.Material, mode: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    smtp = Smtp()
    ctx = material.server_context()
    server = await _smtp_server(smtp, **({"implicit": ctx} if mode == "implicit" else {"starttls": ctx}))
    cfg = _config(tmp_path, _email_toml(smtp.port, mode))
    caplog.set_level(logging.DEBUG)
    try:
        async with HttpClient(config.HttpConfig(ca_file=material.ca_file)) as http:
            alerter = Alerter(cfg.alerts, http, LocalStore(tmp_path / "store"))
            # The server runs on this same event loop: a blocking smtplib call would hang here.
            assert await asyncio.wait_for(alerter.send(GAP), 20), alerter.failing
    finally:
        server.close()
    assert smtp.logins == [("alerts@contoso.example", PASSWORD)]
    [(sender, rcpts, data)] = smtp.messages
    assert sender == "ms-log-agent@contoso.example"
    assert rcpts == ["secops@contoso.example", "soc@contoso.example"]
    msg = message_from_bytes(data.replace(b"\r\n", b"\n"), policy=policy.default)
    assert msg["Subject"] == "[ms-log-agent] error: The SIEM is missing records"
    assert msg["To"] == "secops@contoso.example, soc@contoso.example"
    body = msg.get_content()
    assert GAP.text in body and "missing: 32" in body and f"key: {GAP.key}" in body
    assert PASSWORD not in caplog.text
    if mode == "starttls":
        assert smtp.commands.index("STARTTLS") < smtp.commands.index("AUTH")


async def test_email_refuses_a_server_without_starttls(tmp_path: Path, material: tls.Material) -> None:
    smtp = Smtp()
    server = await _smtp_server(smtp)  # offers no STARTTLS: a downgrade, or a misconfigured relay
    cfg = _config(tmp_path, _email_toml(smtp.port, "starttls"))
    metrics = Metrics()
    try:
        async with HttpClient(config.HttpConfig(ca_file=material.ca_file)) as http:
            alerter = Alerter(cfg.alerts, http, LocalStore(tmp_path / "store"), metrics)
            assert not await asyncio.wait_for(alerter.send(GAP), 20)
    finally:
        server.close()
    assert not smtp.messages and not smtp.logins and "MAIL" not in smtp.commands
    assert alerter.failing["secops-mail"].startswith("127.0.0.1: SMTPNotSupportedError")
    assert Scraped.parse(metrics.render().decode()).get("agent_alerts_failed_total", kind="siem_gap",
                                                        webhook="secops-mail") == 1


async def test_email_to_a_plain_relay_without_login(tmp_path: Path) -> None:
    smtp = Smtp()
    server = await _smtp_server(smtp)
    cfg = _config(tmp_path, _email_toml(smtp.port, "none", auth=False))
    try:
        async with HttpClient(config.HttpConfig()) as http:
            assert await Alerter(cfg.alerts, http, LocalStore(tmp_path / "store")).send(GAP)
    finally:
        server.close()
    assert len(smtp.messages) == 1 and not smtp.logins


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "says"), [
    ('[[alerts.webhooks]]\nkind = "pagerduty"\n', "routing_key_file or routing_key_env is required"),
    ('[[alerts.webhooks]]\nkind = "pagerduty"\nrouting_key = "abc"\n', "never written in the config"),
    ('[[alerts.webhooks]]\nkind = "pagerduty"\nrouting_key_env = "K"\nurl = "http://x/v2/enqueue"\n',
     "https:// only"),
    (_email_toml(25, "none"), "cross the network in clear"),
    (_email_toml(25, "starttls").replace('to = ["secops@contoso.example", ', 'to = ["a@b\\nBcc: x@y", '),
     "is not a single e-mail address"),
    (_email_toml(25, "starttls").replace('username = "alerts@contoso.example"\n', ""),
     "username and password_file/password_env go together"),
    ('[[alerts.email]]\nhost = "smtp.example"\nfrom = "a@b.example"\nto = []\n', "at least one recipient"),
    ('[[alerts.email]]\nhost = "smtp.example"\nfrom = "a@b.example"\nto = ["c@d.example"]\nport = 0\n',
     "below the minimum"),
])
def test_channel_config_errors_name_the_key(tmp_path: Path, toml: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        _config(tmp_path, toml)


def test_email_port_defaults_follow_the_tls_mode(tmp_path: Path) -> None:
    for mode, port in (("starttls", 587), ("implicit", 465), ("none", 25)):
        toml = _email_toml(0, mode, auth=False).replace("port = 0\n", "")
        assert _config(tmp_path, toml).alerts.email[0].port == port


def test_pagerduty_event_is_json_serialisable() -> None:
    assert orjson.loads(orjson.dumps(GAP.pagerduty("k")))["event_action"] == "trigger"


def test_check_names_missing_channel_secrets(tmp_path: Path) -> None:
    from agent import preflight

    cfg = _config(tmp_path, _email_toml(25, "starttls")
                  + '\n[[alerts.webhooks]]\nkind = "pagerduty"\nrouting_key_file = "absent-key"\n')
    (tmp_path / "smtp-pass").unlink()
    found = preflight.problems(cfg)
    assert any("alerts.webhooks[0].routing_key_file" in p and "absent-key does not exist" in p for p in found)
    assert any("alerts.email[0].password_file" in p and "smtp-pass does not exist" in p for p in found)
