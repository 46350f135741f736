"""`agent check`: the config is valid and the store writable; with --online, tokens and the SIEM answer."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from agent.cli.common import EXIT_OK, EXIT_USAGE, load
from agent.errors import AgentError, ConfigError

if TYPE_CHECKING:
    from agent.app import Runtime


async def cmd_check(args: argparse.Namespace) -> int:
    from agent import preflight
    from agent.app import Runtime

    cfg = load(args.config)  # the [siem] table's own keys are parsed at load by the vendor that owns them
    found = preflight.problems(cfg)
    for problem in found:
        print(f"agent: config error: {problem}", file=sys.stderr)
    if found:
        return EXIT_USAGE
    siem = ""
    async with Runtime.open(cfg, http=args.online) as rt:  # offline, no HTTP client exists to reach the network
        await rt.store.check()
        if args.online:
            for tenant in cfg.tenants:
                await rt.tokens(tenant).token()
            siem = await _check_siem(rt)
    print(f"config ok: {len(cfg.tenants)} tenant(s), store {cfg.store.type} writable"
          + (f", SIEM {cfg.siem.type}" if cfg.siem else "")
          + (", tokens obtained" if args.online else "") + siem)
    return EXIT_OK


async def _check_siem(rt: Runtime) -> str:
    """`check --online`: one real query against the SIEM, and its write path when backfill is configured."""
    siem_cfg = rt.siem_config
    siem = rt.siem
    if siem_cfg is None or siem is None:
        return ""
    from agent.siem.base import SiemError
    from agent.siem.registry import vendor

    try:
        await siem.check()
    except ConfigError:
        raise
    except AgentError as exc:
        raise SiemError(f"SIEM {siem_cfg.type} query failed: {exc}") from None
    return ", SIEM query ok" + await vendor(siem_cfg.type).check_write(siem_cfg, rt.cfg, rt.http, rt.tokens)
