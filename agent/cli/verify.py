"""`agent verify`: re-hash segments and walk the manifest chains (agent/archive/verify.py); exit 1 on damage.

Every `--tenant` and every `--stream` given is checked, not only the first of each.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime

from agent import config
from agent.cli.common import EXIT_FAILURE, EXIT_OK, known_streams, load


async def cmd_verify(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    known_streams(cfg, args.stream)
    return await run_verify(cfg, tenants=tenant_ids(cfg, args.tenant), streams=args.stream or (),
                            since=args.since, until=args.until, fmt=args.format)


def tenant_ids(cfg: config.Config, given: Sequence[str] | None) -> list[str]:
    """`--tenant` by id or by the config's name, as every command takes it; an id the config no longer
    lists stays as given, so the archive of a removed tenant can still be verified."""
    ids = {t.name: t.id for t in cfg.tenants if t.name}
    return [ids.get(t, t) for t in given or ()]


async def run_verify(cfg: config.Config, *, tenants: Sequence[str] = (), streams: Sequence[str] = (),
                     since: datetime | None = None, until: datetime | None = None, fmt: str = "text") -> int:
    """Verify the configured store against the configured anchors and print the report (`fmt` json or
    text): exit 0 when intact, 1 on damage."""
    from agent.app import Runtime
    from agent.archive.anchors import open_anchor
    from agent.archive.verify import verify
    from agent.cli.render import verify_text

    online = any(c.type == "siem" for c in cfg.anchors)  # only a SIEM anchor sends HTTP requests
    async with Runtime.open(cfg, http=online) as rt:
        store = rt.store
        anchors = [open_anchor(c, cfg, rt.http, rt.tokens) if online else open_anchor(c) for c in cfg.anchors]
        try:
            report = await verify(store, tenants=tenants, streams=streams, since=since, until=until, anchors=anchors)
        finally:
            for anchor in anchors:
                await anchor.aclose()
    print(json.dumps(report.to_json(), indent=2) if fmt == "json" else verify_text(report))
    return EXIT_OK if report.ok else EXIT_FAILURE
