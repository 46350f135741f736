"""`agent reconcile`: the archive against the SIEM record by record, the report in the asked format, and
with --backfill the records the SIEM lacks sent to it. Exit 3 when gaps remain."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from agent import config
from agent.cli.common import EXIT_FAILURE, EXIT_GAPS, EXIT_OK, load, select, tenant_labels
from agent.errors import ConfigError

if TYPE_CHECKING:
    from agent.app import Runtime


async def cmd_reconcile(args: argparse.Namespace) -> int:
    from agent.app import Runtime
    from agent.reconcile import options_from, reconcile
    from agent.siem.registry import from_config

    cfg = select(load(args.config), args.tenant)
    siem_cfg = from_config(cfg)  # no [siem] table: a config error before anything opens
    streams = [(t.id, s) for t in cfg.tenants for s in t.streams if not args.stream or s in args.stream]
    for s in args.stream or ():
        if not any(s == name for _, name in streams):
            raise ConfigError(f"--stream {s}: no configured tenant collects it")
    opts = options_from(siem_cfg, full=args.full, include_unsettled=args.include_unsettled)
    backfill = args.backfill or args.dry_run
    async with Runtime.open(cfg) as rt:
        writer = rt.writer if backfill else None  # missing backfill keys are a config error before any query
        siem, archive = rt.siem, rt.archive
        if siem is None:  # from_config above has refused a config without [siem]
            raise ConfigError("no [siem] table in the config")
        report = await reconcile(cfg, archive, siem, streams, args.since, args.until, options=opts,
                                 recollect=None if args.no_recollect else _recollector(rt),
                                 progress=_steps("reconcile", "streams", args))
        if writer is not None:
            from agent.backfill import run_backfill

            await run_backfill(siem_cfg, report, archive, siem, writer, dry_run=args.dry_run,
                               progress=_steps("backfill", "records", args))
        from agent.service.status import record_siem_state

        await record_siem_state(rt.store, report)
    _write_report(report, args, cfg, siem_cfg)
    if not report.complete:  # the report says it too; this line is for cron and CI logs
        reasons = report.unverified_reasons()
        print(f"agent: {report.unverified_summary()}. Reason: {' '.join(reasons[0].split()) if reasons else 'unknown'}",
              file=sys.stderr)
    # after a backfill that closed every SIEM gap, only archive holes still count as gaps
    gaps = any(s.missing_in_agent for s in report.streams) if report.backfill_closed else report.has_gaps
    if gaps:
        return EXIT_GAPS
    return EXIT_OK if report.complete else EXIT_FAILURE


def _recollector(rt: Runtime) -> Any:
    """Re-collect a window from the API (the reconcile engine calls it for archive holes in retention)."""
    from agent.collect import Collector

    cfg = rt.cfg
    collector = Collector(cfg, rt.archive, rt.http, tokens=rt.tokens)

    async def recollect(tenant: str, stream: str, start: datetime, end: datetime) -> object:
        return await collector.collect_stream(cfg.tenant(tenant), stream, start, end)

    return recollect


def _steps(what: str, unit: str, args: argparse.Namespace) -> Any:
    """Progress with rate and ETA on a terminal; nothing in pipes, files, logs or with --quiet."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from agent.cli.render import steps

    return steps(sys.stderr, what, unit)


def _write_report(report: Any, args: argparse.Namespace, cfg: config.Config, siem_cfg: Any) -> None:
    """The report to --out or stdout in the asked format; on a terminal, without --format, a summary
    (and with --out, the summary and where the file went). Piped output is JSON as before."""
    from agent.cli.next_steps import next_steps
    from agent.cli.render import reconcile_text

    steps = next_steps(report, siem_cfg, args.config)
    fmt = args.format or _format_of(args.out) or ("text" if sys.stdout.isatty() and not args.out else "json")
    data = _report_bytes(report, fmt, steps, tenant_labels(cfg), args.out)
    if args.out:
        from pathlib import Path

        Path(args.out).write_bytes(data)
        if not args.quiet and sys.stdout.isatty():
            print(reconcile_text(report, tenant_labels(cfg), steps, out=args.out, fmt=fmt))
    elif not args.quiet:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _format_of(out: str | None) -> str | None:
    """`--out report.html` without --format means HTML (and .md Markdown, .json JSON, .txt text)."""
    if not out:
        return None
    return {".html": "html", ".htm": "html", ".md": "md", ".json": "json", ".txt": "text"}.get(
        os.path.splitext(out)[1].lower())


def _report_bytes(report: Any, fmt: str, steps: list[str], labels: dict[str, str], out: str | None) -> bytes:
    from agent.cli.render import reconcile_text
    from agent.reconcile import to_html, to_markdown

    if fmt == "json":
        return orjson.dumps({**report.as_dict(), "next_steps": steps}, option=orjson.OPT_INDENT_2) + b"\n"
    if fmt == "md":
        from agent.reconcile.report import md_code

        extra = ["## What to do next", "", *(f"- {md_code(step)}" for step in steps), ""] if steps else []
        return (to_markdown(report, labels=labels) + "\n" + "\n".join(extra)).encode()
    if fmt == "text":
        return (reconcile_text(report, labels, steps) + "\n").encode()
    page = to_html(report, labels)
    if steps and "</body>" in page:
        from html import escape

        items = "".join(f"<li><code>{escape(step)}</code></li>" for step in steps)
        page = page.replace("</body>", f"<section><h2>What to do next</h2><ul>{items}</ul></section></body>", 1)
    return page.encode()
