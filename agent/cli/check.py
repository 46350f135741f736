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

    cfg = load(args.config)  # the [siem] table's own keys are parsed at load by the vendor that owns them
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
          + (f", SIEM {cfg.siem.type}" if cfg.siem else "")
          + (", tokens obtained" if args.online else "") + siem)
    return EXIT_OK


async def _check_siem(cfg: config.Config) -> str:
    """`check --online`: one real query against the SIEM, and its write path when backfill is configured."""
    if cfg.siem is None:
        return ""
    from agent.http import HttpClient
    from agent.siem.base import SiemError
    from agent.siem.registry import vendor

    siem_cfg = cfg.siem
    async with HttpClient(cfg.http) as http:
        siem = vendor(siem_cfg.type).open_reader(siem_cfg, cfg, http)
        try:
            await siem.check()
        except ConfigError:
            raise
        except AgentError as exc:
            raise SiemError(f"SIEM {siem_cfg.type} query failed: {exc}") from None
        finally:
            await siem.aclose()
        return ", SIEM query ok" + await vendor(siem_cfg.type).check_write(siem_cfg, cfg, http)
