"""`agent status`: per stream, the state the service's alerts announce (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import orjson

from agent.cli.common import EXIT_FAILURE, EXIT_OK, load


async def cmd_status(args: argparse.Namespace) -> int:
    from agent.app import Runtime
    from agent.cli.render import status_text
    from agent.service import status

    cfg = load(args.config)
    now = datetime.now(UTC)
    async with Runtime.open(cfg, http=False) as rt:  # the store only: no HTTP client, no SIEM
        store_problem = await status.probe(rt.store)
        rows = await status.rows(cfg, rt.store, now)
    if args.json:
        print(orjson.dumps([r.as_dict() for r in rows], option=orjson.OPT_INDENT_2).decode())
    else:
        print(status_text(rows, now))
    if store_problem:
        print(f"agent: store: {store_problem} (stream failures since then may be missing above)", file=sys.stderr)
    return EXIT_FAILURE if store_problem or any(r.needs_attention for r in rows) else EXIT_OK
