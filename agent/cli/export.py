"""`agent export`: stored records as NDJSON on stdout, one per id, byte-exact as archived."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EXIT_OK, known_streams, load, select


async def cmd_export(args: argparse.Namespace) -> int:
    from agent import json_exact
    from agent.archive.archive import Archive
    from agent.store import open_store

    cfg = select(load(args.config), args.tenant)
    known_streams(cfg, args.stream)
    store = open_store(cfg.store)
    archive = Archive(store)
    out = sys.stdout.buffer
    try:
        for tenant in cfg.tenants:
            for stream in tenant.streams:
                if args.stream and stream not in args.stream:
                    continue
                for part in await archive.partitions(tenant.id, stream, args.since, args.until):
                    async for rec in archive.records(part):
                        out.write(json_exact.dumps(rec) + b"\n")
        out.flush()
    finally:
        await store.aclose()
    return EXIT_OK
