"""`agent export`: stored records as NDJSON on stdout, one per id, byte-exact as archived."""

from __future__ import annotations

import argparse
import sys

from agent.cli.common import EXIT_OK, known_streams, load, select


async def cmd_export(args: argparse.Namespace) -> int:
    from agent import json_exact
    from agent.app import Runtime

    cfg = select(load(args.config), args.tenant)
    known_streams(cfg, args.stream)
    out = sys.stdout.buffer
    async with Runtime.open(cfg, http=False) as rt:  # the archive only: nothing reaches the network
        archive = rt.archive
        for tenant in cfg.tenants:
            for stream in tenant.streams:
                if args.stream and stream not in args.stream:
                    continue
                for part in await archive.partitions(tenant.id, stream, args.since, args.until):
                    async for rec in archive.records(part):
                        out.write(json_exact.dumps(rec) + b"\n")
        out.flush()
    return EXIT_OK
