"""The `[siem]` table, parsed at config load by the vendor its `type` names.

`agent.config.load` calls `parse`, so a bad `[siem]` key (unknown, wrong type, out of range) is a
config error naming the key before anything runs, never a scheduled reconcile failing hours later.
This map names each vendor's config parser only: building a vendor's reader, writer and anchor is
`agent.siem.registry`'s, which the config never imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agent.config_table import Table
from agent.errors import ConfigError
from agent.siem.elastic import config as elastic
from agent.siem.keys import BackfillConfig, SiemConfig
from agent.siem.sentinel import config as sentinel
from agent.siem.splunk import config as splunk

__all__ = ["PARSERS", "BackfillConfig", "SiemConfig", "names", "parse"]

# `type` -> the vendor's parser of the rest of the table (its keys and the shared ones).
Parser = Callable[[Table, tuple[str, ...], Path | None], SiemConfig[Any]]
PARSERS: dict[str, Parser] = {m.NAME: m.parse for m in (sentinel, splunk, elastic)}


def names() -> str:
    """The vendors as a sentence lists them: "sentinel, splunk or elastic"."""
    first = list(PARSERS)
    return f"{', '.join(first[:-1])} or {first[-1]}"


def parse(raw: Mapping[str, Any] | None, *, tenants: tuple[str, ...] = (), base: Path | None = None) -> SiemConfig[Any]:
    """Validate a raw `[siem]` table; ConfigError names the offending key."""
    if not raw:
        listed = ", ".join(f'"{n}"' for n in PARSERS)
        raise ConfigError(f"no [siem] table in the config: reconcile needs type = {listed.rsplit(', ', 1)[0]} "
                          f"or {listed.rsplit(', ', 1)[1]}")
    t = Table(raw, "siem")
    kind = t.string("type", None, tuple(PARSERS))
    if kind is None:
        raise ConfigError(f"siem.type is required ({names()})")
    cfg = PARSERS[kind](t, tenants, base)
    t.finish()
    return cfg
