"""`agent status`: per stream, the state the service's alerts announce (a table, or JSON with --json)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import orjson

from agent.cli.common import EXIT_FAILURE, EXIT_OK, load


async def cmd_status(args: argparse.Namespace) -> int:
    from agent.cli.render import status_text
    from agent.service import status
    from agent.store import open_store

    cfg = load(args.config)
    store = open_store(cfg.store)
    now = datetime.now(UTC)
    try:
        store_problem = await status.probe(store)
        rows = await status.rows(cfg, store, now)
    finally:
        await store.aclose()
    if args.json:
        print(orjson.dumps([r.as_dict() for r in rows], option=orjson.OPT_INDENT_2).decode())
    else:
        print(status_text(rows, now))
    if store_problem:
        print(f"agent: store: {store_problem} (stream failures since then may be missing above)", file=sys.stderr)
    return EXIT_FAILURE if store_problem or any(r.needs_attention for r in rows) else EXIT_OK
