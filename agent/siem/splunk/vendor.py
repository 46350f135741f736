"""Splunk as the registry sees it: what builds its reader, writer and anchor from the parsed config.

The search head is read with `siem.token`; backfill and chain heads go to the HTTP Event Collector
with `siem.hec_token`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agent.auth import Tokens
from agent.config import Config
from agent.http import HttpClient
from agent.logs import register_secret
from agent.siem.anchor import HeadSink, MakeHead
from agent.siem.base import Siem, Target
from agent.siem.keys import SiemConfig
from agent.siem.splunk import config
from agent.siem.splunk.config import SplunkConfig
from agent.siem.splunk.reader import SplunkSiem, present_search
from agent.siem.splunk.writer import SplunkWriter
from agent.sources.base import Window


class SplunkVendor:
    """Splunk: search export to read, HEC with indexer acknowledgement to write."""

    name: ClassVar[str] = config.NAME

    def open_reader(self, cfg: SiemConfig[SplunkConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Siem:
        secret = register_secret(cfg.vendor.token.reveal())

        async def token() -> str:
            return secret

        return SplunkSiem(cfg, http, token)

    def open_writer(self, cfg: SiemConfig[SplunkConfig], agent_cfg: Config, http: HttpClient,
                    tokens: Tokens) -> SplunkWriter:
        return SplunkWriter(cfg, http)

    def open_anchor(self, cfg: SiemConfig[SplunkConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens,
                    index: str, make_head: MakeHead) -> HeadSink:
        from agent.siem.splunk.anchor import SplunkAnchor

        secret = register_secret(cfg.vendor.token.reveal())
        return SplunkAnchor(cfg, http, secret, index or SplunkConfig.anchor_default, make_head)

    def missing_query(self, cfg: SiemConfig[SplunkConfig], target: Target, tenant: str, window: Window,
                      ids: Sequence[str]) -> tuple[str, str]:
        """(where the stream lives, an SPL search returning which of `ids` Splunk holds)."""
        return (f"Splunk index {target.index or 'main'}, sourcetype {target.source}",
                f"{present_search(target, tenant, ids)} earliest={int(window.start.timestamp())} "
                f"latest={int(window.end.timestamp())}")

    async def check_write(self, cfg: SiemConfig[SplunkConfig], agent_cfg: Config, http: HttpClient,
                          tokens: Tokens) -> str:
        """`check --online`: whether the HEC token has indexer acknowledgement (Splunk Cloud has none)."""
        if not cfg.vendor.hec_url or cfg.vendor.hec_token is None:
            return ""
        if await SplunkWriter(cfg, http).ack_enabled():
            return ", HEC indexer acknowledgement on"
        return (", HEC without indexer acknowledgement (as on Splunk Cloud): backfill confirms each batch by "
                "searching for it" + ("; set siem.hec_ack = false" if cfg.vendor.hec_ack else ""))


VENDOR = SplunkVendor()
