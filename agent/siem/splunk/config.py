"""Splunk's `[siem]` keys: the search head it queries, and the HTTP Event Collector backfill and
chain heads write through.

```toml
[siem]
type = "splunk"
url = "https://splunk.example:8089"       # management port (search export)
token_file = "…"                          # or token_env; auth_scheme = "Bearer" or "Splunk"
index = "main"                            # the index every stream's sourcetype is searched in
hec_url = "https://splunk.example:8088"   # backfill: HEC, hec_token_file / hec_token_env
[siem.streams."o365.exchange"]
sourcetype = "o365:management:activity"   # + index
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from agent.config_table import Secret, Table
from agent.errors import ConfigError
from agent.siem.keys import SiemConfig, https, optional_name, shared, stream_target, targets
from agent.siem.splunk import rows
from agent.siem.targets import Target, valid_name

NAME = "splunk"
_INDEX = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class SplunkConfig:
    """The Splunk keys of `[siem]` (`SiemConfig.vendor`)."""

    token: Secret  # the search head's token
    auth_scheme: str = "Bearer"  # or "Splunk" (a token made in Splunk's own token store)
    # backfill and chain heads: HTTP Event Collector
    hec_url: str = ""
    hec_token: Secret | None = None
    hec_ack: bool = True
    hec_ack_timeout: timedelta = timedelta(minutes=2)
    hec_ack_interval: timedelta = timedelta(seconds=1)
    anchor_default: ClassVar[str] = "main"  # the index chain heads go to

    def anchor_index(self, name: str, where: str) -> str:
        if not _INDEX.match(name):
            raise ConfigError(f"{where}: {name!r} is not a valid index name")
        return name


def parse(t: Table, tenants: tuple[str, ...], base: Path | None) -> SiemConfig[SplunkConfig]:
    common = shared(t)
    hec = t.string("hec_url", "")
    hec_url, hec_token = (https(hec, "siem.hec_url") if hec else ""), t.secret("hec_token", base)
    hec_ack = t.boolean("hec_ack", True)
    ack_timeout = t.duration("hec_ack_timeout", timedelta(minutes=2), positive=True, maximum=timedelta(hours=1))
    ack_interval = t.duration("hec_ack_interval", timedelta(seconds=1), positive=True, maximum=timedelta(minutes=10))
    url = https(t.required("url"), "siem.url")
    token = t.secret("token", base)
    if token is None:
        raise ConfigError(f"siem.token_file or siem.token_env is required for {NAME}")
    scheme = t.string("auth_scheme", "Bearer", ("Bearer", "Splunk"))
    index = valid_name(t.string("index", "main"), "siem.index")
    defaults = {s: replace(d, index=index) for s, d in rows.defaults().items()}
    vendor = SplunkConfig(token, scheme, hec_url, hec_token, hec_ack, ack_timeout, ack_interval)
    return SiemConfig(type=NAME, url=url, vendor=vendor, targets=targets(t, defaults, _target), **common)


def _target(t: Table, default: Target) -> Target:
    base = stream_target(t, "sourcetype", default)
    return replace(base, index=optional_name(t.string("index", default.index) or "", f"{t.where}.index"))
