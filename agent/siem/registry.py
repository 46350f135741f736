"""SIEM registry: the config's `[siem] type` names a vendor; the vendor builds its reader (reconcile),
writer (backfill) and chain-head anchor from the `SiemConfig` its own `config.py` parsed at load.

Nothing outside `agent/siem/` asks which vendor it has: it asks the vendor (`vendor(cfg.type)`). A
fourth SIEM is a folder beside `sentinel/`, `splunk/` and `elastic/` with `config.py`, `reader.py`,
`writer.py`, `rows.py`, `anchor.py` and `vendor.py`, named here and in `agent.siem.config.PARSERS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from agent.auth import Tokens
from agent.config import Config
from agent.errors import ConfigError
from agent.http import HttpClient
from agent.siem import config as siem_config
from agent.siem.anchor import HeadSink, MakeHead
from agent.siem.base import Siem, Target, Writer
from agent.siem.elastic.vendor import VENDOR as ELASTIC
from agent.siem.keys import SiemConfig
from agent.siem.sentinel.vendor import VENDOR as SENTINEL
from agent.siem.splunk.vendor import VENDOR as SPLUNK
from agent.sources.base import Window

__all__ = ["VENDORS", "Vendor", "from_config", "open_anchor", "open_siem", "open_writer", "vendor"]


class Vendor(Protocol):
    """**Protocol:** one SIEM product. Each method raises ConfigError naming what is missing."""

    name: ClassVar[str]

    def open_reader(self, cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Siem:
        """The Siem reconcile queries, on the shared HTTP client; the caller owns and closes both."""
        ...

    def open_writer(self, cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Writer:
        """The backfill writer; ConfigError when the SIEM's write keys are missing."""
        ...

    def open_anchor(self, cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens, index: str,
                    make_head: MakeHead) -> HeadSink:
        """Chain heads held by the SIEM in `index` ("" = the vendor's default), read back as `make_head` builds them."""
        ...

    def missing_query(self, cfg: SiemConfig[Any], target: Target, tenant: str, window: Window,
                      ids: Sequence[str]) -> tuple[str, str]:
        """(where the stream lives, a query in the SIEM's language returning which of `ids` it holds)."""
        ...

    async def check_write(self, cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> str:
        """`agent check --online`: what the write path proved (", ... ok"), "" when nothing to check."""
        ...


VENDORS: dict[str, Vendor] = {v.name: v for v in (SENTINEL, SPLUNK, ELASTIC)}


def vendor(name: str) -> Vendor:
    try:
        return VENDORS[name]
    except KeyError:
        raise ConfigError(f"siem.type: {name!r} is not one of {', '.join(VENDORS)}") from None


def from_config(cfg: Config) -> SiemConfig[Any]:
    """The `[siem]` table of a loaded config (parsed at load); ConfigError when there is none."""
    if cfg.siem is None:
        return siem_config.parse(None)  # raises: "no [siem] table in the config: ..."
    return cfg.siem


def open_siem(cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Siem:
    """Build the configured reader on the shared HTTP client; the caller owns and closes both."""
    return vendor(cfg.type).open_reader(cfg, agent_cfg, http, tokens)


def open_writer(cfg: SiemConfig[Any], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Writer:
    """The backfill writer for the configured SIEM; ConfigError names what is missing."""
    return vendor(cfg.type).open_writer(cfg, agent_cfg, http, tokens)


def open_anchor(agent_cfg: Config, http: HttpClient, tokens: Tokens, index: str, make_head: MakeHead) -> HeadSink:
    """Chain heads held by the configured SIEM (`[[anchors]] type = "siem"`)."""
    cfg = from_config(agent_cfg)
    return vendor(cfg.type).open_anchor(cfg, agent_cfg, http, tokens, index, make_head)
