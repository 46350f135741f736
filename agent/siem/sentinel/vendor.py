"""Sentinel as the registry sees it: what builds its reader, writer and anchor from the parsed config.

Both paths authenticate as a `[[tenants]]` app registration (`siem.tenant`, else the first tenant):
the reader with the query endpoint as token audience, the writer with the Logs Ingestion one. The
token providers are the runtime's (`tokens`), so reader, writer and anchor share msal's cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from agent.auth import Tokens
from agent.config import Config, TenantConfig
from agent.errors import ConfigError
from agent.http import HttpClient
from agent.siem.anchor import HeadSink, MakeHead
from agent.siem.base import Siem, Target
from agent.siem.keys import SiemConfig
from agent.siem.sentinel import config
from agent.siem.sentinel.config import SentinelConfig
from agent.siem.sentinel.reader import SentinelSiem, present_query
from agent.siem.sentinel.writer import SentinelWriter
from agent.sources.base import Window


def _tenant(cfg: SiemConfig[SentinelConfig], agent_cfg: Config, what: str) -> TenantConfig:
    if not agent_cfg.tenants:
        raise ConfigError(f"siem: {what} needs a [[tenants]] entry whose app registration reads the workspace")
    return agent_cfg.tenant(cfg.vendor.tenant) if cfg.vendor.tenant else agent_cfg.tenants[0]


class SentinelVendor:
    """Microsoft Sentinel: Log Analytics query API to read, Logs Ingestion to write."""

    name: ClassVar[str] = config.NAME

    def open_reader(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens) -> Siem:
        query = tokens(_tenant(cfg, agent_cfg, "Sentinel"), cfg.vendor.resource or cfg.url)
        return SentinelSiem(cfg, http, query.token, query.invalidate)

    def open_writer(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient,
                    tokens: Tokens) -> SentinelWriter:
        if not agent_cfg.tenants:
            raise ConfigError("siem: Sentinel backfill needs a [[tenants]] entry whose app may write the DCR")
        ingest = tokens(_tenant(cfg, agent_cfg, "Sentinel backfill"), cfg.vendor.ingestion_resource)
        return SentinelWriter(cfg, http, ingest.token, ingest.invalidate)

    def open_anchor(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient, tokens: Tokens,
                    index: str, make_head: MakeHead) -> HeadSink:
        from agent.siem.sentinel.anchor import SentinelAnchor

        return SentinelAnchor(cfg, agent_cfg, http, tokens, index or SentinelConfig.anchor_default, make_head)

    def missing_query(self, cfg: SiemConfig[SentinelConfig], target: Target, tenant: str, window: Window,
                      ids: Sequence[str]) -> tuple[str, str]:
        """(where the stream lives, a KQL query returning which of `ids` the workspace holds)."""
        return (f"Log Analytics workspace {cfg.vendor.workspace_id}, table {target.source}",
                present_query(target, tenant, window, ids))

    async def check_write(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient,
                          tokens: Tokens) -> str:
        """`check --online`: a Logs Ingestion token, when backfill is configured."""
        if not cfg.vendor.ingestion_endpoint:
            return ""
        await self.open_writer(cfg, agent_cfg, http, tokens).token()
        return ", Logs Ingestion token obtained"


VENDOR = SentinelVendor()
