"""`agent audit-collector`: what did a third-party collector lose?

Compares the records any collector wrote while it ran against the emulator (`agent emulator exec`)
with the emulator's ground truth, per stream: missed, duplicated, invented. Each missed record is
set beside the emulator's fault log, so the user sees which injected fault (a throttle, a 5xx, a
reset blob fetch...) may have cost it, and which losses no fault explains (the collector dropped
them on its own). The emulator's request log adds each client's quota use.

This module is the command line only: its flags (`add_arguments`), turned into typed values and
handed to `verdict.audit_files` (`run`), the report rendered as text or JSON, and the exit code.
Reading the inputs is `inputs.py`, the verdicts `verdict.py`, the text form `text.py`.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

import orjson

from emulator.audit.inputs import DEFAULT_ID_FIELDS, AuditError, Collected
from emulator.audit.text import to_text
from emulator.audit.verdict import EXIT_USAGE, Audit, audit_files
from emulator.world.clock import parse_datetime as parse_time

PROG = "agent audit-collector"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truth", required=True, type=Path, help="the emulator's --truth NDJSON")
    p.add_argument(
        "--records",
        required=True,
        type=Path,
        action="append",
        help="what the collector wrote: NDJSON, JSON array or CSV (repeatable)",
    )
    p.add_argument("--records-format", choices=("auto", "ndjson", "json", "csv"), default="auto")
    p.add_argument(
        "--delimiter", type=_delimiter, help="CSV field separator (default: sniffed among , ; tab |); implies CSV"
    )
    p.add_argument(
        "--id-field", action="append", help="record id field, dotted for nested JSON (repeatable; default id, Id, ID)"
    )
    p.add_argument("--fault-log", type=Path, help="the emulator's fault log, to say which fault cost what")
    p.add_argument(
        "--requests", type=Path, help="the emulator's request log: the streams asked for, recoveries, quota use"
    )
    p.add_argument(
        "--stream",
        action="append",
        help="only these streams, counted even if never written (repeatable; default: those written or asked for)",
    )
    p.add_argument("--tenant", action="append", help="only this tenant id (repeatable)")
    p.add_argument("--since", help="only records with event time at or after (RFC 3339)")
    p.add_argument("--until", help="only records with event time before (RFC 3339)")
    p.add_argument("--as-of", help="when the collector stopped (RFC 3339); default: last logged request, else now")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--out", type=Path, help="write the report here (default: stdout)")
    p.add_argument("--show", type=int, default=10, help="ids listed per line in text (default 10)")


def _delimiter(text: str) -> str:
    value = {"tab": "\t", "\\t": "\t"}.get(text.lower(), text)
    if len(value) != 1 or value in "\"\r\n":
        raise argparse.ArgumentTypeError(f"{text!r} is not a one-character delimiter (e.g. ';', '|', tab)")
    return value


def _instant(text: str | None) -> datetime | None:
    """An RFC 3339 flag value, or None when the flag was not given; ValueError names a bad one."""
    return parse_time(text) if text else None


def run(args: argparse.Namespace) -> int:
    """The Namespace ends here: every flag becomes a typed keyword of `audit_files`."""
    try:
        since, until, as_of = _instant(args.since), _instant(args.until), _instant(args.as_of)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = audit_files(
            truth=args.truth,
            records=args.records,
            id_fields=tuple(args.id_field or DEFAULT_ID_FIELDS),
            records_format=args.records_format,
            delimiter=args.delimiter,
            fault_log=args.fault_log,
            request_log=args.requests,
            streams=set(args.stream) if args.stream else None,
            tenants={t.lower() for t in args.tenant} if args.tenant else None,
            since=since,
            until=until,
            as_of=as_of,
        )
    except AuditError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _emit(render(result, output_format=args.format, show=args.show), out=args.out)
    if result.collected.mostly_unreadable:  # result.exit_status is EXIT_USAGE: say why, on one line
        print(_unreadable_line(result.collected), file=sys.stderr)
    return result.exit_status


def render(result: Audit, *, output_format: str, show: int) -> bytes:
    """The report's bytes: indented JSON with a final newline, or the text form."""
    if output_format == "json":
        return orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
    return to_text(result, show).encode()


def _emit(data: bytes, *, out: Path | None) -> None:
    if out:
        out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _unreadable_line(collected: Collected) -> str:
    read = sum(collected.counts.values())
    return (
        f"{PROG}: most records are unreadable ({collected.unparseable + collected.without_id} "
        f"unreadable, {read} read); check --records-format, --delimiter and --id-field"
    )
