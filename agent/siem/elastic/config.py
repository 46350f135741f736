"""Elasticsearch's `[siem]` keys: the cluster it queries and `_bulk`-writes backfill and chain heads to.

```toml
[siem]
type = "elastic"
url = "https://es.example:9200"
api_key_file = "…"                        # or api_key_env (an encoded API key)
[siem.streams."o365.exchange"]
index = "logs-o365.audit-*"               # + backfill_index (one index or data stream)
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from agent.config_table import Secret, Table
from agent.errors import ConfigError
from agent.siem.elastic import rows
from agent.siem.keys import SiemConfig, https, shared, stream_target, targets
from agent.siem.targets import Target, valid_name

NAME = "elastic"
_INDEX = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class ElasticConfig:
    """The Elasticsearch keys of `[siem]` (`SiemConfig.vendor`)."""

    api_key: Secret
    anchor_default: ClassVar[str] = "ms-log-agent-chain-heads"  # the index chain heads go to

    def anchor_index(self, name: str, where: str) -> str:
        if not _INDEX.match(name):
            raise ConfigError(f"{where}: {name!r} is not a valid index name")
        return name


def parse(t: Table, tenants: tuple[str, ...], base: Path | None) -> SiemConfig[ElasticConfig]:
    common = shared(t)
    url = https(t.required("url"), "siem.url")
    api_key = t.secret("api_key", base)
    if api_key is None:
        raise ConfigError(f"siem.api_key_file or siem.api_key_env is required for {NAME}")
    return SiemConfig(type=NAME, url=url, vendor=ElasticConfig(api_key=api_key),
                      targets=targets(t, rows.defaults(), _target), **common)


def _target(t: Table, default: Target) -> Target:
    """A stream's index pattern; logs-azure.signinlogs-* backfills into the data stream
    logs-azure.signinlogs-backfill."""
    base = stream_target(t, "index", default)
    backfill_to = t.string("backfill_index", base.source.replace("*", "backfill"))
    if backfill_to:
        valid_name(backfill_to, f"{t.where}.backfill_index")
    return replace(base, backfill_to=backfill_to)
