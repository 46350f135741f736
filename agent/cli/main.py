"""The `agent` command line: run, collect, reconcile, triangulate, export, verify, status, check, demo,
emulator, audit-collector. Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 reconcile found gaps."""

# This module is the parser, the dispatch and the one top-level error handler; each command's body is in
# its own module beside it (collect.py, reconcile.py, ...), and what a terminal shows is drawn by render.py.

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

from agent import __version__, config
from agent.cli.check import cmd_check
from agent.cli.collect import cmd_collect, cmd_run
from agent.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from agent.cli.completion import Parser
from agent.cli.export import cmd_export
from agent.cli.reconcile import cmd_reconcile
from agent.cli.status import cmd_status
from agent.cli.triangulate import cmd_triangulate
from agent.cli.verify import cmd_verify
from agent.errors import AgentError, ConfigError
from agent.logs import event, scrub

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


def build_parser() -> Parser:
    parser = Parser(prog="agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_commands(dest="command", required=True, metavar="COMMAND")

    p = parser.add_command("collect", help="collect records into the archive")
    _common(p)
    _window_args(p)
    p.add_argument("--once", action="store_true", help="one pass, then exit (default: keep polling)")
    p.add_argument("--wait", action="store_true",
                   help="if another collector holds a tenant of this store, wait for it instead of exiting 1")
    p.add_argument("--format", choices=("text", "json"),
                   help="--once result per stream on stderr: a table (default on a terminal) or JSON lines")
    p.add_argument("--quiet", "-q", action="store_true", help="with --once: no result lines; the exit code says it")

    p = parser.add_command("run", help="the service: collect continuously, reconcile on schedule, serve metrics")
    _common(p)
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="I/N",
                   help="collect only tenants i, i+n, ... (config order) so n agents can share one bucket")

    p = parser.add_command("reconcile", help="compare the archive with the SIEM record by record (exit 3: gaps)")
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

    p = parser.add_command(
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

    p = parser.add_command("export", help="stored records as NDJSON on stdout, one per id")
    _common(p)
    _window_args(p)

    p = parser.add_command("verify", help="re-hash segments and walk the manifest chains; exit 1 on damage")
    _common(p)
    _window_args(p)
    p.add_argument("--format", choices=("text", "json"), default="text")

    p = parser.add_command("status", help="per stream: cursor, last success, records, last error")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = parser.add_command("check", help="validate the config and probe the store (and tokens with --online)")
    _common(p)
    p.add_argument("--online", action="store_true", help="also obtain a token for every tenant")

    p = parser.add_command("emulator", help="serve emulated Microsoft and SIEM APIs on loopback", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)

    p = parser.add_command(
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

    p = parser.add_command("demo", help="emulator + collection + reconcile, end to end, in a temp directory")
    p.add_argument("--dir", help="keep the demo's files here instead of a temp directory")

    p = parser.add_command("completion", help="print a shell completion script: source <(agent completion bash)")
    p.add_argument("shell", choices=("bash", "zsh"))

    from agent.cli.help_topics import TOPICS

    p = parser.add_command("help", help="short help on a topic: agent help TOPIC; the topics: agent help")
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
