"""Alerts to the security team's channels: generic JSON, Microsoft Teams and Slack webhooks.

The September 2024 loss went unnoticed because the notice reached only tenant admins; here every
condition that means "records may be missing" reaches the people who run detections. Each alert
has an identity key; an identity is sent once (remembered in the store, so restarts do not
repeat it), and a per-webhook hourly cap keeps a flapping condition from flooding a channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson

from agent.codec import format_time, parse_time
from agent.config import AlertsConfig, Webhook
from agent.errors import AgentError, ObjectNotFound
from agent.http import HttpClient, backoff, redact_url
from agent.layout import META
from agent.logs import event, register_secret
from agent.metrics import Metrics
from agent.store.base import Store

log = logging.getLogger("agent.alerts")
SENT_PREFIX = f"{META}/alerts/sent"
SENT_KEY = f"{SENT_PREFIX}.json"
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
        self.key = SENT_KEY if shard == (0, 1) else f"{SENT_PREFIX}-shard{shard[0]}of{shard[1]}.json"
        self._sent: dict[str, str] | None = None
        self._recent: dict[str, deque[float]] = {}
        # webhook -> why its last delivery failed; `/readyz` lists them until a delivery succeeds
        self.failing: dict[str, str] = {}

    async def _load(self) -> dict[str, str]:
        if self._sent is None:
            merged: dict[str, str] = {}
            keys = sorted([k async for k in self.store.list(f"{META}/alerts/") if k.startswith(SENT_PREFIX)
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
        for hook in self.cfg.webhooks:
            delivered |= await self._deliver(hook, alert)
        if delivered or not self.cfg.webhooks:
            for key in (alert.key, *covers):
                sent[key] = format_time(datetime.now(UTC))
            await self._persist(sent)
            if self.metrics and delivered:
                self.metrics.alerts.labels(alert.kind).inc()
        return delivered

    async def _deliver(self, hook: Webhook, alert: Alert) -> bool:
        window = self._recent.setdefault(hook.name or hook.kind, deque())
        now = time.monotonic()
        while window and now - window[0] > 3600:
            window.popleft()
        if len(window) >= self.cfg.max_per_hour:
            event(log, logging.ERROR, "Alert not delivered: webhook hourly cap reached.",
                  webhook=hook.name or hook.kind, alert_kind=alert.kind)
            return False
        payload = {"generic": alert.generic, "teams": alert.teams, "slack": alert.slack}[hook.kind]()
        url = register_secret(hook.url.reveal())
        name, host = hook.name or hook.kind, _host(url)
        reason = ""
        for attempt in range(ATTEMPTS):
            try:
                resp = await self.http.request("POST", url, data=orjson.dumps(payload),
                                               headers={"Content-Type": "application/json"})
                if 200 <= resp.status < 300:
                    window.append(now)
                    self.failing.pop(name, None)
                    return True
                reason = f"HTTP {resp.status}"
            except AgentError as exc:
                reason = _reason(exc, url, host)
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

    async def _persist(self, sent: dict[str, str]) -> None:
        cutoff = datetime.now(UTC) - _REMEMBER
        for k in [k for k, v in sent.items() if parse_time(v) < cutoff]:
            del sent[k]
        await self.store.put(self.key, orjson.dumps(sent), overwrite=True)
