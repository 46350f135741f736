"""SIEM adapters: `open_siem` maps `[siem] type` to an implementation of `agent.siem.base.Siem`."""

from __future__ import annotations

from agent.config import Config
from agent.errors import ConfigError
from agent.http import HttpClient
from agent.logs import register_secret
from agent.siem.base import Siem
from agent.siem.config import SiemConfig


def open_siem(cfg: SiemConfig, agent_cfg: Config, http: HttpClient) -> Siem:
    """Build the configured adapter on the shared HTTP client; the caller owns and closes both."""
    if cfg.type == "sentinel":
        from agent.auth import TokenProvider
        from agent.siem.sentinel import SentinelSiem

        if not agent_cfg.tenants:
            raise ConfigError("siem: Sentinel needs a [[tenants]] entry whose app registration reads the workspace")
        tenant = agent_cfg.tenant(cfg.tenant) if cfg.tenant else agent_cfg.tenants[0]
        tokens = TokenProvider(tenant, cfg.resource or cfg.url, agent_cfg.http)
        return SentinelSiem(cfg, http, tokens.token, tokens.invalidate)
    if cfg.token is None:
        raise ConfigError(f"siem: {cfg.type} needs a token")
    secret = register_secret(cfg.token.reveal())

    async def token() -> str:
        return secret

    if cfg.type == "splunk":
        from agent.siem.splunk import SplunkSiem

        return SplunkSiem(cfg, http, token)
    from agent.siem.elastic import ElasticSiem

    return ElasticSiem(cfg, http, token)
