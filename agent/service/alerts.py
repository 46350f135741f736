"""Alerts to the security team's channels: generic JSON, Microsoft Teams and Slack webhooks,
PagerDuty (Events API v2) and e-mail (SMTP).

The September 2024 loss went unnoticed because the notice reached only tenant admins; here every
condition that means "records may be missing" reaches the people who run detections. Each alert
has an identity key; an identity is sent once (remembered in the store, so restarts do not
repeat it), and a per-webhook hourly cap keeps a flapping condition from flooding a channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import smtplib
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from agent.archive import layout
from agent.archive.codec import format_time, parse_time
from agent.config import AlertsConfig, EmailChannel, Webhook
from agent.errors import AgentError, AuthError, ObjectExists, ObjectNotFound, StoreError
from agent.http import HttpClient, backoff, redact_url, ssl_context
from agent.logs import event, register_secret
from agent.service.metrics import Metrics
from agent.sources.management_activity.api import SubscriptionDisabled
from agent.store.base import Store

log = logging.getLogger("agent.service.alerts")
SENT_PREFIX = layout.ALERTS_SENT_PREFIX
SENT_KEY = layout.alerts_sent_key((0, 1))
_REMEMBER = timedelta(days=30)
KINDS = ("siem_gap", "agent_gap", "stream_stalled", "stream_silent", "subscription_disabled",
         "credentials_failing", "store_failing", "service_notice", "window_failed", "task_failed",
         "siem_unverified", "licence_refused", "upstream_gap")


@dataclass(frozen=True)
class Alert:
    kind: str
    key: str  # identity: the same condition always yields the same key
    title: str
    text: str
    severity: str = "error"
    fields: dict[str, Any] = field(default_factory=dict)
    link: str | None = None

    def generic(self) -> dict[str, Any]:
        return {"kind": self.kind, "key": self.key, "severity": self.severity, "title": self.title,
                "text": self.text, "fields": self.fields, "link": self.link,
                "time": format_time(datetime.now(UTC)), "source": "ms-log-agent"}

    def teams(self) -> dict[str, Any]:
        """An Adaptive Card in the message envelope Teams workflow webhooks accept."""
        body: list[dict[str, Any]] = [
            {"type": "TextBlock", "text": self.title, "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "TextBlock", "text": self.text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": str(v)} for k, v in self.fields.items()]},
        ]
        actions = [{"type": "Action.OpenUrl", "title": "Details", "url": self.link}] if self.link else []
        card = {"type": "AdaptiveCard", "version": "1.4", "body": body, "actions": actions,
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json"}
        return {"type": "message",
                "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}]}

    def slack(self) -> dict[str, Any]:
        facts = "\n".join(f"*{k}*: {v}" for k, v in self.fields.items())
        text = f"*{self.title}*\n{self.text}" + (f"\n{facts}" if facts else "")
        text += f"\n<{self.link}>" if self.link else ""
        return {"text": f"{self.title}: {self.text}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}

    def pagerduty(self, routing_key: str) -> dict[str, Any]:
        """A PagerDuty Events API v2 trigger event (developer.pagerduty.com, "Send an Alert Event").

        dedup_key is the alert's identity, so PagerDuty folds a repeat into the open incident; the
        API caps it at 255 characters and the summary at 1024, so a longer key is replaced by its
        SHA-256 (the full key stays in custom_details).
        """
        dedup = self.key if len(self.key) <= 255 else f"{self.kind}:{hashlib.sha256(self.key.encode()).hexdigest()}"
        payload: dict[str, Any] = {
            "summary": f"{self.title}: {self.text}"[:1024],
            "source": socket.gethostname() or "ms-log-agent",
            "severity": _PD_SEVERITY.get((self.kind, self.severity), _PD_SEVERITY.get(("", self.severity), "info")),
            "timestamp": format_time(datetime.now(UTC)),
            "component": str(self.fields.get("stream", "ms-log-agent")),
            "group": str(self.fields.get("tenant", "")),
            "class": self.kind,
            "custom_details": {**self.fields, "key": self.key, "text": self.text},
        }
        event_: dict[str, Any] = {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup,
                                  "payload": payload, "client": "ms-log-agent"}
        if self.link:
            event_["links"] = [{"href": self.link, "text": "Details"}]
        return event_

    def email(self, sender: str, to: Sequence[str]) -> EmailMessage:
        """A plain-text message; header values never carry a line break (no header injection)."""
        msg = EmailMessage()
        subject = f"[ms-log-agent] {self.severity}: {self.title}"
        msg["Subject"] = " ".join(subject.split())[:200]
        msg["From"] = sender
        msg["To"] = ", ".join(to)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = make_msgid(domain="ms-log-agent")
        lines = [self.text, "", *(f"{k}: {v}" for k, v in self.fields.items()), "", f"kind: {self.kind}",
                 f"key: {self.key}"]
        if self.link:
            lines.append(f"details: {self.link}")
        msg.set_content("\n".join(lines) + "\n")
        return msg


class AlertSink(Protocol):
    """**Protocol:** where the service's loops send alerts (an `Alerter`, or a recorder in tests)."""

    async def send(self, alert: Alert, covers: Sequence[str] = ()) -> bool: ...


# The alert a failed collection pass raises, by the exact type of its error (kind, title). Exact, not
# isinstance: a subclass with another meaning keeps the general alert (StoreLocked, a StoreError, is
# another collector holding the tenant, not a failing store).
FAILURE_KINDS: dict[type[BaseException], tuple[str, str]] = {
    AuthError: ("credentials_failing", "Credentials are failing"),
    SubscriptionDisabled: ("subscription_disabled", "Management Activity subscription disabled"),
    StoreError: ("store_failing", "Archive store is failing"),
    ObjectExists: ("store_failing", "Archive store is failing"),
}
WINDOW_FAILED = ("window_failed", "Collection window failed; cursor held")


def failure_kind(error: type[BaseException] | None) -> tuple[str, str]:
    """(kind, title) of the alert for a pass that failed with `error` (an exception type)."""
    return FAILURE_KINDS.get(error, WINDOW_FAILED) if error is not None else WINDOW_FAILED


# PagerDuty severities are critical, error, warning, info. Records lost for good (an expired blob,
# a span past retention) are critical; other errors are error; Microsoft notices are warning.
_PD_SEVERITY = {("agent_gap", "error"): "critical", ("", "error"): "error", ("", "warning"): "warning"}


ATTEMPTS = 4


def _host(url: str) -> str:
    """Only the host of a webhook: its path and query are the credential (Slack, Teams, PagerDuty)."""
    return urlsplit(url).hostname or "?"


def _reason(exc: AgentError, url: str, host: str) -> str:
    """The error with the webhook's URL replaced by its host (the errno and cause stay)."""
    text = str(exc).replace(redact_url(url), host).replace(url, host)
    return f"{type(exc).__name__}: {text}"


class Alerter:
    def __init__(self, cfg: AlertsConfig, http: HttpClient, store: Store, metrics: Metrics | None = None,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.cfg = cfg
        self.http = http
        self.store = store
        self.metrics = metrics
        # Agents sharing a bucket (`--shard i/n`) each write their own file, so neither overwrites
        # the other's memory; each reads them all, so re-sharding does not repeat old alerts.
        self.key = layout.alerts_sent_key(shard)
        self._sent: dict[str, str] | None = None
        self._recent: dict[str, deque[float]] = {}
        # webhook -> why its last delivery failed; `/readyz` lists them until a delivery succeeds
        self.failing: dict[str, str] = {}

    async def _load(self) -> dict[str, str]:
        if self._sent is None:
            merged: dict[str, str] = {}
            keys = sorted([k async for k in self.store.list(layout.ALERTS_PREFIX) if k.startswith(SENT_PREFIX)
                           and k.endswith(".json")], key=lambda k: k != self.key)  # own file first
            for key in keys:
                try:
                    for k, v in orjson.loads(await self.store.get(key)).items():
                        merged.setdefault(k, v)
                except ObjectNotFound:
                    pass
            self._sent = merged
        return self._sent

    async def send(self, alert: Alert, covers: Sequence[str] = ()) -> bool:
        """Deliver an alert unless its identity was already sent; True when it went out.

        `covers`: finer identities the alert stands for (e.g. the hours of a gap); when given, the
        alert goes out only if one of them is new, and all of them are remembered with it.
        """
        sent = await self._load()
        if alert.key in sent or (covers and all(k in sent for k in covers)):
            return False
        level = logging.ERROR if alert.severity == "error" else logging.WARNING
        event(log, level, alert.title, alert_kind=alert.kind, alert_key=alert.key, **alert.fields)
        delivered = False
        channels: tuple[Webhook | EmailChannel, ...] = (*self.cfg.webhooks, *self.cfg.email)
        for channel in channels:
            delivered |= await self._deliver(channel, alert)
        if delivered or not channels:
            for key in (alert.key, *covers):
                sent[key] = format_time(datetime.now(UTC))
            await self._persist(sent)
            if self.metrics and delivered:
                self.metrics.alerts.labels(alert.kind).inc()
        return delivered

    async def _deliver(self, channel: Webhook | EmailChannel, alert: Alert) -> bool:
        name = channel.name or channel.kind
        window = self._recent.setdefault(name, deque())
        now = time.monotonic()
        while window and now - window[0] > 3600:
            window.popleft()
        if len(window) >= self.cfg.max_per_hour:
            event(log, logging.ERROR, "Alert not delivered: webhook hourly cap reached.",
                  webhook=name, alert_kind=alert.kind)
            return False
        host = channel.host if isinstance(channel, EmailChannel) else _host(self._url(channel))
        reason = ""
        for attempt in range(ATTEMPTS):
            reason = await self._attempt(channel, alert, host)
            if not reason:
                window.append(now)
                self.failing.pop(name, None)
                return True
            if attempt + 1 < ATTEMPTS:
                event(log, logging.INFO, "Alert delivery failed, retrying.", webhook=name, host=host,
                      reason=reason, attempt=attempt + 1)
                await asyncio.sleep(backoff(attempt, base=0.5, cap=5))
        # The channel that should say "records are missing" is itself down: say so everywhere else.
        event(log, logging.ERROR, "Alert could not be delivered.", webhook=name, host=host, reason=reason,
              attempts=ATTEMPTS, alert_kind=alert.kind)
        self.failing[name] = f"{host}: {reason}"
        if self.metrics is not None:
            self.metrics.alerts_failed.labels(alert.kind, name).inc()
        return False

    @staticmethod
    def _url(hook: Webhook) -> str:
        if hook.kind == "pagerduty" or hook.url is None:
            return hook.endpoint
        return register_secret(hook.url.reveal())

    async def _attempt(self, channel: Webhook | EmailChannel, alert: Alert, host: str) -> str:
        """One delivery; "" when it went through, else why not (without the channel's secrets)."""
        if isinstance(channel, EmailChannel):
            return await self._attempt_email(channel, alert)
        url = self._url(channel)
        if channel.kind == "pagerduty":
            assert channel.routing_key is not None  # config requires it for this kind
            payload = alert.pagerduty(register_secret(channel.routing_key.reveal()))
        else:
            payload = {"generic": alert.generic, "teams": alert.teams, "slack": alert.slack}[channel.kind]()
        try:
            resp = await self.http.request("POST", url, data=orjson.dumps(payload),
                                           headers={"Content-Type": "application/json"})
        except AgentError as exc:
            return _reason(exc, url, host)
        return "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"

    async def _attempt_email(self, channel: EmailChannel, alert: Alert) -> str:
        password = register_secret(channel.password.reveal()) if channel.password else ""
        message = alert.email(channel.sender, channel.to)
        context = ssl_context(self.http.cfg)  # system trust plus [http] ca_file, as for HTTPS
        timeout = self.http.cfg.timeout.total_seconds()
        try:
            # smtplib blocks; a thread keeps the event loop (collection, /metrics) running meanwhile.
            await asyncio.to_thread(_smtp_send, channel, password, message, context, timeout)
        except (smtplib.SMTPException, OSError) as exc:
            return _smtp_reason(exc, password)
        return ""

    async def _persist(self, sent: dict[str, str]) -> None:
        cutoff = datetime.now(UTC) - _REMEMBER
        for k in [k for k, v in sent.items() if parse_time(v) < cutoff]:
            del sent[k]
        await self.store.put(self.key, orjson.dumps(sent), overwrite=True)


def _smtp_send(channel: EmailChannel, password: str, message: EmailMessage, context: ssl.SSLContext,
               timeout: float) -> None:
    """Submit one message (RFC 6409 submission with STARTTLS, RFC 8314 implicit TLS, or a relay)."""
    smtp: smtplib.SMTP
    if channel.tls == "implicit":
        smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(channel.host, channel.port, timeout=timeout)
    with smtp:
        smtp.ehlo()
        if channel.tls == "starttls":
            # A server that does not offer STARTTLS is refused: the alert never goes out in clear.
            smtp.starttls(context=context)
            smtp.ehlo()
        if channel.username:
            smtp.login(channel.username, password)
        smtp.send_message(message)


def _smtp_reason(exc: BaseException, password: str) -> str:
    text = str(exc)
    if password:
        text = text.replace(password, "***")
    return f"{type(exc).__name__}: {text}"
