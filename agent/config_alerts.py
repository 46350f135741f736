"""The `[alerts]` table: webhooks (generic, Teams, Slack, PagerDuty) and e-mail channels, with the
rate limits that keep an incident from flooding them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from agent.config_table import Secret, Table
from agent.errors import ConfigError

_MONTH = timedelta(days=30)


# PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event"); the EU service region
# answers at events.eu.pagerduty.com, so the URL can be set, while the routing key stays a secret.
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


@dataclass(frozen=True)
class Webhook:
    kind: str  # "generic" (JSON), "teams", "slack" or "pagerduty"
    url: Secret | None  # webhook URLs embed credentials, so they come from files/env like other secrets
    name: str = ""
    routing_key: Secret | None = None  # PagerDuty: the integration key is the credential, not the URL
    endpoint: str = PAGERDUTY_URL  # PagerDuty only: where events are enqueued


@dataclass(frozen=True)
class EmailChannel:
    """Alerts by SMTP: for teams whose on-call reads a mailbox, or where webhooks cannot leave."""

    host: str
    sender: str  # config key `from`
    to: tuple[str, ...]
    port: int = 587
    tls: str = "starttls"  # "starttls", "implicit" (SMTPS, port 465) or "none" (a local relay only)
    username: str = ""
    password: Secret | None = None
    name: str = ""
    kind: ClassVar[str] = "email"  # beside Webhook.kind: names the channel in logs and metrics


@dataclass(frozen=True)
class AlertsConfig:
    webhooks: tuple[Webhook, ...] = ()
    email: tuple[EmailChannel, ...] = ()
    min_interval: timedelta = timedelta(minutes=15)  # the same alert is not repeated more often
    max_per_hour: int = 30  # across all alerts, per webhook


def parse_alerts(t: Table, base: Path | None) -> AlertsConfig:
    d = AlertsConfig()
    hooks = []
    for i, raw in enumerate(t._get("webhooks", list, [])):
        hooks.append(_webhook(Table(raw, f"alerts.webhooks[{i}]"), base))
    emails = tuple(_email(Table(raw, f"alerts.email[{i}]"), base) for i, raw in enumerate(t._get("email", list, [])))
    return AlertsConfig(webhooks=tuple(hooks), email=emails,
                        min_interval=t.duration("min_interval", d.min_interval, maximum=_MONTH),
                        max_per_hour=t.integer("max_per_hour", d.max_per_hour, minimum=1, maximum=3600))


def _webhook(h: Table, base: Path | None) -> Webhook:
    kind = h.string("kind", "generic", ("generic", "teams", "slack", "pagerduty"))
    name = h.string("name", "")
    if kind != "pagerduty":
        url = h.secret("url", base)
        if url is None:
            raise ConfigError(f"{h.where}: url_file or url_env is required")
        h.finish()
        return Webhook(kind=kind, url=url, name=name)
    key = h.secret("routing_key", base)
    if key is None:
        raise ConfigError(f"{h.where}: routing_key_file or routing_key_env is required for kind = \"pagerduty\"")
    endpoint = h.string("url", PAGERDUTY_URL)
    if not endpoint.startswith("https://"):
        raise ConfigError(f"{h.where}.url: PagerDuty events go over https:// only")
    h.finish()
    return Webhook(kind=kind, url=None, name=name, routing_key=key, endpoint=endpoint)


_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")  # one bare address: no display name, no header folding


def _email(e: Table, base: Path | None) -> EmailChannel:
    tls = e.string("tls", "starttls", ("starttls", "implicit", "none"))
    host = e.required("host")
    if not re.match(r"^[A-Za-z0-9.:\[\]-]+$", host):
        raise ConfigError(f"{e.where}.host: {host!r} is not a host name or address")
    sender = e.required("from")
    to = e.list_of_str("to", ())
    for key, address in (("from", sender), *(("to", a) for a in to)):
        if not _ADDRESS.match(address):
            raise ConfigError(f"{e.where}.{key}: {address!r} is not a single e-mail address")
    if not to:
        raise ConfigError(f"{e.where}.to: at least one recipient is required")
    username = e.string("username", "")
    password = e.secret("password", base)
    if tls == "none" and (username or password):
        raise ConfigError(f"{e.where}: a username or password needs tls = \"starttls\" or \"implicit\"; "
                          "it would cross the network in clear")
    if bool(username) != bool(password):
        raise ConfigError(f"{e.where}: username and password_file/password_env go together")
    port = e.integer("port", {"starttls": 587, "implicit": 465, "none": 25}[tls], minimum=1, maximum=65535)
    channel = EmailChannel(host=host, sender=sender, to=to, port=port, tls=tls, username=username,
                           password=password, name=e.string("name", ""))
    e.finish()
    return channel
