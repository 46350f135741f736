"""`agent collect` (one pass with --once, else polling) and `agent run` (the service)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from agent import config
from agent.cli.common import EXIT_FAILURE, EXIT_OK, known_streams, load, preflight, select, tenant_labels


async def cmd_collect(args: argparse.Namespace) -> int:
    from agent.app import Runtime
    from agent.collect import Collector

    cfg = select(load(args.config), args.tenant)
    known_streams(cfg, args.stream)
    preflight(cfg)
    async with Runtime.open(cfg) as rt:
        collector = Collector(cfg, rt.archive, rt.http, wait=args.wait, tokens=rt.tokens)
        while True:
            bar = _collect_progress(cfg, args)
            collector.progress = bar
            try:
                outcomes = await collector.collect(args.stream, args.since, args.until)
            finally:
                if bar is not None:
                    bar.end()
            failed = [o for o in outcomes if not o.ok]
            if args.once:
                _print_outcomes(cfg, [o.as_dict() for o in outcomes], args)
                return EXIT_FAILURE if failed else EXIT_OK
            await asyncio.sleep(cfg.collection.poll_interval.total_seconds())


def _collect_progress(cfg: config.Config, args: argparse.Namespace) -> Any:
    """A progress line for a `collect` pass, only when stderr is a terminal and not --quiet."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from agent.cli.render import CollectProgress

    streams = sum(1 for t in cfg.tenants for s in t.streams if not args.stream or s in args.stream)
    return CollectProgress(sys.stderr, streams, args.until)


def _print_outcomes(cfg: config.Config, outcomes: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """`collect --once`: JSON lines on stderr for scripts (unchanged), a table for a person."""
    if args.quiet:
        return
    if args.format == "json" or (args.format is None and not sys.stderr.isatty()):
        for o in outcomes:
            print(orjson.dumps(o).decode(), file=sys.stderr)
        return
    from agent.cli.render import collect_text

    print(collect_text(outcomes, tenant_labels(cfg)), file=sys.stderr)


async def cmd_run(args: argparse.Namespace) -> int:
    from agent import logs
    from agent.service.supervisor import Service

    cfg = config.load(args.config)
    logs.setup(cfg.log.level, cfg.log.format, stream=sys.stdout)  # services log JSON lines on stdout
    preflight(cfg)
    return await Service(cfg, shard=args.shard, hard_exit=True).run()
