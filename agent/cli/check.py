"""`agent check`: the config is valid and the store writable; with --online, tokens and the SIEM answer."""

from __future__ import annotations

import argparse
import sys

from agent import config
from agent.cli.common import EXIT_OK, EXIT_USAGE, load
from agent.errors import AgentError, ConfigError


async def cmd_check(args: argparse.Namespace) -> int:
    from agent import preflight
    from agent.auth import TokenProvider
    from agent.store import open_store

    cfg = load(args.config)
    if cfg.siem is not None:
        from agent.siem.config import from_config

        from_config(cfg)  # the [siem] table's own keys, validated by the adapter that owns them
    found = preflight.problems(cfg)
    for problem in found:
        print(f"agent: config error: {problem}", file=sys.stderr)
    if found:
        return EXIT_USAGE
    store = open_store(cfg.store)
    siem = ""
    try:
        await store.check()
        if args.online:
            for tenant in cfg.tenants:
                await TokenProvider(tenant, tenant.endpoints.graph, cfg.http).token()
            siem = await _check_siem(cfg)
    finally:
        await store.aclose()
    print(f"config ok: {len(cfg.tenants)} tenant(s), store {cfg.store.type} writable"
          + (f", SIEM {cfg.siem.get('type')}" if cfg.siem else "")
          + (", tokens obtained" if args.online else "") + siem)
    return EXIT_OK


async def _check_siem(cfg: config.Config) -> str:
    """`check --online`: one real query against the SIEM, and its write path when backfill is configured."""
    if cfg.siem is None:
        return ""
    from agent.http import HttpClient
    from agent.siem import open_siem
    from agent.siem.base import SiemError
    from agent.siem.config import from_config

    siem_cfg = from_config(cfg)
    async with HttpClient(cfg.http) as http:
        siem = open_siem(siem_cfg, cfg, http)
        try:
            await siem.check()
        except ConfigError:
            raise
        except AgentError as exc:
            raise SiemError(f"SIEM {siem_cfg.type} query failed: {exc}") from None
        finally:
            await siem.aclose()
    text = ", SIEM query ok"
    if siem_cfg.type == "sentinel" and siem_cfg.backfill.ingestion_endpoint:
        from agent.backfill.writers import SentinelWriter, open_writer

        async with HttpClient(cfg.http) as http:
            writer = open_writer(siem_cfg, cfg, http)
            if isinstance(writer, SentinelWriter):
                await writer.token()
        text += ", Logs Ingestion token obtained"
    return text + await _check_hec(cfg)


async def _check_hec(cfg: config.Config) -> str:
    """For a Splunk backfill target: whether its HEC token has indexer acknowledgement (Splunk Cloud has none)."""
    if cfg.siem is None or cfg.siem.get("type") != "splunk":
        return ""
    from agent.backfill.writers import SplunkWriter
    from agent.http import HttpClient
    from agent.siem.config import from_config

    siem_cfg = from_config(cfg)
    if not siem_cfg.backfill.hec_url or siem_cfg.backfill.hec_token is None:
        return ""
    async with HttpClient(cfg.http) as http:
        acks = await SplunkWriter(siem_cfg, http).ack_enabled()
    if acks:
        return ", HEC indexer acknowledgement on"
    return (", HEC without indexer acknowledgement (as on Splunk Cloud): backfill confirms each batch by "
            "searching for it" + ("; set siem.hec_ack = false" if siem_cfg.backfill.hec_ack else ""))
