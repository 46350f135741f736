"""The `agent` command line: run, collect, reconcile, triangulate, export, verify, status, check, demo,
emulator, audit-collector. Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 reconcile found gaps."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent import __version__, config
from agent.errors import AgentError, ConfigError
from agent.logs import event, scrub

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_GAPS = 0, 1, 2, 3
log = logging.getLogger("agent.cli.main")


def parse_when(text: str) -> datetime:
    """An RFC 3339 instant, or a duration ago such as '24h' / '-24h' / '7d'."""
    try:
        ago: timedelta | None = config.parse_duration(text.lstrip("-"))
    except ConfigError:
        ago = None
    if ago is not None:
        try:
            return datetime.now(UTC) - ago
        except OverflowError:
            raise argparse.ArgumentTypeError(f"{text!r} reaches back before the year 1") from None
    try:
        from agent.archive.codec import parse_time

        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an RFC 3339 time nor a duration like 24h") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default="/etc/ms-log-agent/agent.toml", help="config file (TOML)")


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stream", action="append", help="only this stream (repeatable)")
    p.add_argument("--tenant", action="append", help="only this tenant id or name (repeatable)")
    p.add_argument("--since", type=parse_when, help="start (RFC 3339 or a duration ago, e.g. 24h)")
    p.add_argument("--until", type=parse_when, help="end (RFC 3339 or a duration ago)")


def _shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit()) or not 0 <= int(i) < int(n):
        raise argparse.ArgumentTypeError(f"--shard {text!r}: use I/N with 0 <= I < N, e.g. 0/3")
    return int(i), int(n)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="collect records into the archive")
    _common(p)
    _window_args(p)
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: keep polling)")
    p.add_argument("--wait", action="store_true",
                   help="if another collector holds a tenant of this store, wait for it instead of exiting 1")
    p.add_argument("--format", choices=("text", "json"),
                   help="--once result per stream on stderr: a table (default on a terminal) or JSON lines")
    p.add_argument("--quiet", "-q", action="store_true", help="with --once: no result lines; the exit code says it")

    p = sub.add_parser("run", help="the service: collect continuously, reconcile on schedule, serve metrics")
    _common(p)
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="collect only tenants i, i+n, ... (config order) so n agents can share one bucket")

    p = sub.add_parser("reconcile", help="compare the archive with the SIEM record by record (exit 3: gaps)")
    _common(p)
    _window_args(p)
    p.add_argument("--format", choices=("json", "md", "html", "text"),
                   help="report format (default: from the --out file's extension, else a summary on a "
                   "terminal and json when piped)")
    p.add_argument("--out", help="write the report to this file (default: stdout)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on stdout; the exit code says it")
    p.add_argument("--full", action="store_true", help="fetch ids of every bucket, not only where counts differ")
    p.add_argument("--include-unsettled", action="store_true",
                   help="also compare the window younger than [siem] settle (the SIEM may still be ingesting)")
    p.add_argument("--no-recollect", action="store_true",
                   help="report records missing in the archive without fetching them again from the API")
    p.add_argument("--backfill", action="store_true",
                   help="send the SIEM the records it lacks (idempotent: a ledger remembers what it acknowledged)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --backfill: show what would be sent, send nothing (implies --backfill)")

    p = sub.add_parser(
        "triangulate", help="compare Microsoft's sibling pipelines in the archive (exit 3: one lacks what another has)",
        description="Per hour, compare Graph with the unified audit log (Management Activity API) as archived: "
        "directory audits with RecordType 8 record by record, interactive sign-ins with RecordType 15 by learned "
        "count ratio. Hours younger than 12 h or past a stream's cursor are not judged. Exit 0 every judged hour "
        "agrees; 3 a pipeline lacks activity its sibling has; 1 some pair could judge no hour; 2 usage or config "
        "error. See docs/triangulation.md.")
    _common(p)
    _window_args(p)
    p.add_argument("--format", choices=("text", "json", "md", "html"), default="text", help="report format")
    p.add_argument("--out", help="write the report to this file (default: stdout)")

    p = sub.add_parser("export", help="stored records as NDJSON on stdout, one per id")
    _common(p)
    _window_args(p)

    p = sub.add_parser("verify", help="re-hash segments and walk the manifest chains; exit 1 on damage")
    _common(p)
    _window_args(p)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = sub.add_parser("status", help="per stream: cursor, last success, records, last error")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("check", help="validate the config and probe the store (and tokens with --online)")
    _common(p)
    p.add_argument("--online", action="store_true", help="also obtain a token for every tenant")

    p = sub.add_parser("emulator", help="serve emulated Microsoft and SIEM APIs on loopback", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)

    p = sub.add_parser(
        "audit-collector",
        help="what another collector lost: its records against the emulator's truth (exit 3 losses, "
        "4 duplicates only, 5 invented)",
        description="Compare the records a third-party collector wrote while running against the emulator "
        "(agent emulator exec) with the emulator's ground truth: per stream missed, duplicated, invented, "
        "with the emulator faults that may explain each loss. Exit 0 none found; 3 records missed; "
        "5 invented records, none missed; 4 duplicates only; 2 unreadable or mostly unreadable input.",
    )
    from emulator.audit.collector import add_arguments as _audit_arguments

    _audit_arguments(p)

    p = sub.add_parser("demo", help="emulator + collection + reconcile, end to end, in a temp directory")
    p.add_argument("--dir", help="keep the demo's files here instead of a temp directory")

    p = sub.add_parser("completion", help="print a shell completion script: source <(agent completion bash)")
    p.add_argument("shell", choices=("bash", "zsh"))

    from agent.cli.help_topics import TOPICS

    p = sub.add_parser("help", help="short help on a topic: agent help TOPIC; the topics: agent help")
    p.add_argument("topic", nargs="?", choices=tuple(TOPICS), help="one of: " + ", ".join(TOPICS))
    return parser


def _tune_gc() -> None:
    """Collection turns 2 MB pages into ~1,000 dicts each; with the default thresholds the cyclic
    collector rescans every live record over and over (measured: 1.4-1.8x throughput with higher
    thresholds, docs/benchmarks.md P1). Records hold no cycles, so collecting less often is safe;
    start-up objects are frozen so later collections skip them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The one place where every exception ends: a user sees one line and an exit
    code, never a traceback; the log keeps where an unexpected one came from."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"agent: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`agent export | head`): say nothing, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return EXIT_FAILURE
    except Exception as exc:  # noqa: BLE001 - the top-level handler: anything else is a bug, said in one line
        return _unexpected(exc)


def _main(args_list: list[str]) -> int:
    if args_list[:1] == ["emulator"]:
        from emulator.cli import main as emulator_main

        return int(emulator_main(args_list[1:]))
    args = build_parser().parse_args(args_list)
    if args.command in ("collect", "run", "reconcile", "export", "verify"):
        _tune_gc()
    result = COMMANDS[args.command](args)
    return asyncio.run(result) if asyncio.iscoroutine(result) else int(result)


def _unexpected(exc: BaseException) -> int:
    """An exception no code path expected: one line for the user, the frames in the log (as a field,
    so a JSON log keeps them in one line), exit 1."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)[-12:]
    trace = " > ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames)
    where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    event(log, logging.ERROR, "Unexpected error; please report it with this log line.",
          kind=type(exc).__name__, error=str(exc), trace=trace)
    message = " ".join(str(exc).split()) or "no message"
    print(scrub(f"agent: unexpected error ({type(exc).__name__}{where}): {message}"), file=sys.stderr)
    return EXIT_FAILURE


def _load(args: argparse.Namespace) -> config.Config:
    from agent import logs

    cfg = config.load(args.config)
    logs.setup(cfg.log.level, cfg.log.format)
    return cfg


def _preflight(cfg: config.Config) -> None:
    """A secret file that is missing or unreadable is a config error (exit 2) before any work starts,
    as `agent check` reports it, not a collection failure later."""
    from agent import preflight

    found = preflight.problems(cfg)
    if found:
        raise ConfigError("; ".join(found))


def _select(cfg: config.Config, args: argparse.Namespace) -> config.Config:
    if not getattr(args, "tenant", None):
        return cfg
    keep = tuple(cfg.tenant(t) for t in args.tenant)
    return config.Config(**{**cfg.__dict__, "tenants": keep})


async def cmd_collect(args: argparse.Namespace) -> int:
    from agent.archive.archive import Archive
    from agent.collect import Collector
    from agent.http import HttpClient
    from agent.store import open_store

    cfg = _select(_load(args), args)
    _known_streams(cfg, args)
    _preflight(cfg)
    store = open_store(cfg.store)
    try:
        async with HttpClient(cfg.http) as http:
            collector = Collector(cfg, Archive(store), http, wait=args.wait)
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
    finally:
        await store.aclose()


def _known_streams(cfg: config.Config, args: argparse.Namespace) -> None:
    """A misspelt --stream is a usage error, never an empty answer that looks like "nothing stored"."""
    for s in args.stream or ():
        if not any(s in t.streams for t in cfg.tenants):
            from agent.streams import STREAMS

            hint = "" if s in STREAMS else f"; valid: {', '.join(STREAMS)}"
            raise ConfigError(f"--stream {s}: no configured tenant collects it{hint}")


def _collect_progress(cfg: config.Config, args: argparse.Namespace) -> Any:
    """A progress line for a `collect` pass, only when stderr is a terminal and not --quiet."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from agent.cli.render import CollectProgress

    streams = sum(1 for t in cfg.tenants for s in t.streams if not args.stream or s in args.stream)
    return CollectProgress(sys.stderr, streams, args.until)


def _labels(cfg: config.Config) -> dict[str, str]:
    return {t.id: t.label for t in cfg.tenants}


def _print_outcomes(cfg: config.Config, outcomes: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """`collect --once`: JSON lines on stderr for scripts (unchanged), a table for a person."""
    if args.quiet:
        return
    if args.format == "json" or (args.format is None and not sys.stderr.isatty()):
        for o in outcomes:
            print(orjson.dumps(o).decode(), file=sys.stderr)
        return
    from agent.cli.render import collect_text

    print(collect_text(outcomes, _labels(cfg)), file=sys.stderr)


async def cmd_run(args: argparse.Namespace) -> int:
    from agent import logs
    from agent.service.supervisor import Service

    cfg = config.load(args.config)
    logs.setup(cfg.log.level, cfg.log.format, stream=sys.stdout)  # services log JSON lines on stdout
    _preflight(cfg)
    return await Service(cfg, shard=args.shard, hard_exit=True).run()


async def cmd_export(args: argparse.Namespace) -> int:
    from agent import json_exact
    from agent.archive.archive import Archive
    from agent.store import open_store

    cfg = _select(_load(args), args)
    _known_streams(cfg, args)
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


async def cmd_verify(args: argparse.Namespace) -> int:
    from agent.archive.verify import run_verify

    cfg = _load(args)
    _known_streams(cfg, args)
    ns = argparse.Namespace(**{**vars(args), "tenant": (args.tenant or [None])[0],
                               "stream": (args.stream or [None])[0]})
    return await run_verify(cfg, ns)


async def cmd_status(args: argparse.Namespace) -> int:
    from agent.service import status
    from agent.store import open_store

    cfg = _load(args)
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
        print(status.table(rows, now))
    if store_problem:
        print(f"agent: store: {store_problem} (stream failures since then may be missing above)", file=sys.stderr)
    return EXIT_FAILURE if store_problem or any(r.needs_attention for r in rows) else EXIT_OK


async def cmd_check(args: argparse.Namespace) -> int:
    from agent import preflight
    from agent.auth import TokenProvider
    from agent.store import open_store

    cfg = _load(args)  # the [siem] table's own keys are parsed at load by the vendor that owns them
    found = preflight.problems(cfg)
    for problem in found:
        print(f"agent: config error: {problem}", file=sys.stderr)
    if found:
        return EXIT_USAGE
    store = open_store(cfg.store)
    siem = ""
    try:
        probe = getattr(store, "check", None)
        if probe is not None:
            await probe()
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


async def cmd_reconcile(args: argparse.Namespace) -> int:
    from agent.archive.archive import Archive
    from agent.http import HttpClient
    from agent.reconcile import options_from, reconcile
    from agent.siem.registry import from_config, open_siem, open_writer
    from agent.store import open_store

    cfg = _select(_load(args), args)
    siem_cfg = from_config(cfg)
    streams = [(t.id, s) for t in cfg.tenants for s in t.streams if not args.stream or s in args.stream]
    for s in args.stream or ():
        if not any(s == name for _, name in streams):
            raise ConfigError(f"--stream {s}: no configured tenant collects it")
    opts = options_from(siem_cfg, full=args.full, include_unsettled=args.include_unsettled)
    backfill = args.backfill or args.dry_run
    if backfill:
        async with HttpClient(cfg.http) as probe:  # missing backfill keys are a config error before any query
            open_writer(siem_cfg, cfg, probe)
    store = open_store(cfg.store)
    archive = Archive(store)
    try:
        async with HttpClient(cfg.http) as http:
            siem = open_siem(siem_cfg, cfg, http)
            try:
                report = await reconcile(cfg, archive, siem, streams, args.since, args.until, options=opts,
                                         recollect=None if args.no_recollect else _recollector(cfg, archive, http),
                                         progress=_steps("reconcile", "streams", args))
                if backfill:
                    from agent.backfill import run_backfill

                    await run_backfill(cfg, siem_cfg, report, archive, siem, http, dry_run=args.dry_run,
                                       progress=_steps("backfill", "records", args))
                from agent.service.status import record_siem_state

                await record_siem_state(store, report)
            finally:
                await siem.aclose()
    finally:
        await store.aclose()
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


async def cmd_triangulate(args: argparse.Namespace) -> int:
    from agent.archive.archive import Archive
    from agent.store import open_store
    from agent.triangulate.engine import CONTEXT, pairs_for, triangulate
    from agent.triangulate.report import to_html, to_markdown, to_text

    cfg = _select(_load(args), args)
    from agent.triangulate.witness import witnessed

    tenants = [(t.id, t.streams) for t in cfg.tenants]
    if not any(pairs_for(streams, args.stream) or witnessed(list(streams), args.stream) for _, streams in tenants):
        raise ConfigError("no tenant collects a pair of sibling streams or a witnessed stream"
                          + (" in --stream" if args.stream else "")
                          + " (graph.directory_audits or graph.signins.interactive with o365.azure_active_directory;"
                          + " graph.signins.noninteractive, .serviceprincipal or .managedidentity)")
    until = args.until or datetime.now(UTC)
    since = args.since or until - CONTEXT
    if since >= until:
        raise ConfigError("--since must be before --until")
    store = open_store(cfg.store)
    try:
        report = await triangulate(Archive(store), tenants, since, until, args.stream)
        report.pairs += await _witness_pairs(cfg, Archive(store), args.stream, since, until)
    finally:
        await store.aclose()
    render = {"json": lambda r: r.to_json().decode() + "\n", "md": to_markdown, "html": to_html, "text": to_text}
    _emit(render[args.format](report).encode(), args.out)
    if report.has_gaps:
        return EXIT_GAPS
    if not report.complete:
        print("agent: triangulate could not judge any hour of some pair (not collected or not settled)",
              file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


async def _witness_pairs(cfg: config.Config, archive: Any, streams: list[str] | None, since: datetime,
                         until: datetime) -> list[Any]:
    """The count witness (agent/triangulate/witness.py) of every witnessed stream a tenant collects; a summary
    that cannot be read leaves its pair unjudged (exit 1), never "all good"."""
    from agent.auth import TokenProvider
    from agent.http import HttpClient
    from agent.triangulate.witness import witness_pairs

    def unread(tenant: config.TenantConfig, stream: str, exc: AgentError) -> None:
        print(f"agent: {tenant.label}/{stream}: the summarized sign-ins could not be read: {exc}", file=sys.stderr)

    async with HttpClient(cfg.http) as http:
        return list(await witness_pairs(
            archive, http, cfg.tenants, lambda t: (TokenProvider(t, t.endpoints.graph, cfg.http), None),
            streams, since, until, datetime.now(UTC), unread))


def _emit(data: bytes, out: str | None) -> None:
    if out:
        from pathlib import Path

        try:
            Path(out).write_bytes(data)
        except OSError as exc:
            raise AgentError(f"cannot write the report to {out}: {exc.strerror}") from None
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _recollector(cfg: config.Config, archive: Any, http: Any) -> Any:
    """Re-collect a window from the API (the reconcile engine calls it for archive holes in retention)."""
    from agent.collect import Collector

    collector = Collector(cfg, archive, http)

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
    from agent.cli.render import next_steps, reconcile_text

    steps = next_steps(report, siem_cfg, args.config)
    fmt = args.format or _format_of(args.out) or ("text" if sys.stdout.isatty() and not args.out else "json")
    data = _report_bytes(report, fmt, steps, _labels(cfg), args.out)
    if args.out:
        from pathlib import Path

        Path(args.out).write_bytes(data)
        if not args.quiet and sys.stdout.isatty():
            print(reconcile_text(report, _labels(cfg), steps, out=args.out, fmt=fmt))
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


def cmd_audit_collector(args: argparse.Namespace) -> int:
    from emulator.audit.collector import run

    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return int(run_demo(args.dir))


def cmd_completion(args: argparse.Namespace) -> int:
    from agent.cli.completion import script

    sys.stdout.write(script(build_parser(), args.shell))
    return EXIT_OK


def cmd_help(args: argparse.Namespace) -> int:
    from agent.cli import help_topics

    sys.stdout.write(help_topics.text(args.topic) + "\n" if args.topic else help_topics.index())
    return EXIT_OK


Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]] | Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {
    "run": cmd_run,
    "collect": cmd_collect,
    "export": cmd_export,
    "reconcile": cmd_reconcile,
    "triangulate": cmd_triangulate,
    "status": cmd_status,
    "verify": cmd_verify,
    "check": cmd_check,
    "demo": cmd_demo,
    "audit-collector": cmd_audit_collector,
    "completion": cmd_completion,
    "help": cmd_help,
}
