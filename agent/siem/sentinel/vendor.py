"""Sentinel as the registry sees it: what builds its reader, writer and anchor from the parsed config.

Both paths authenticate as a `[[tenants]]` app registration (`siem.tenant`, else the first tenant):
the reader with the query endpoint as token audience, the writer with the Logs Ingestion one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

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

    def open_reader(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient) -> Siem:
        from agent.auth import TokenProvider

        tenant = _tenant(cfg, agent_cfg, "Sentinel")
        tokens = TokenProvider(tenant, cfg.vendor.resource or cfg.url, agent_cfg.http)
        return SentinelSiem(cfg, http, tokens.token, tokens.invalidate)

    def open_writer(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient) -> SentinelWriter:
        from agent.auth import TokenProvider

        if not agent_cfg.tenants:
            raise ConfigError("siem: Sentinel backfill needs a [[tenants]] entry whose app may write the DCR")
        tenant = _tenant(cfg, agent_cfg, "Sentinel backfill")
        tokens = TokenProvider(tenant, cfg.vendor.ingestion_resource, agent_cfg.http)
        return SentinelWriter(cfg, http, tokens.token, tokens.invalidate)

    def open_anchor(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient,
                    index: str, make_head: MakeHead) -> HeadSink:
        from agent.siem.sentinel.anchor import SentinelAnchor

        return SentinelAnchor(cfg, agent_cfg, http, index or SentinelConfig.anchor_default, make_head)

    def missing_query(self, cfg: SiemConfig[SentinelConfig], target: Target, tenant: str, window: Window,
                      ids: Sequence[str]) -> tuple[str, str]:
        """(where the stream lives, a KQL query returning which of `ids` the workspace holds)."""
        return (f"Log Analytics workspace {cfg.vendor.workspace_id}, table {target.source}",
                present_query(target, tenant, window, ids))

    async def check_write(self, cfg: SiemConfig[SentinelConfig], agent_cfg: Config, http: HttpClient) -> str:
        """`check --online`: a Logs Ingestion token, when backfill is configured."""
        if not cfg.vendor.ingestion_endpoint:
            return ""
        await self.open_writer(cfg, agent_cfg, http).token()
        return ", Logs Ingestion token obtained"


VENDOR = SentinelVendor()
