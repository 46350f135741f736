"""`agent audit-collector`: what did a third-party collector lose?

Compares the records any collector wrote while it ran against the emulator (`agent emulator exec`)
with the emulator's ground truth, per stream: missed, duplicated, invented. Each missed record is
set beside the emulator's fault log, so the user sees which injected fault (a throttle, a 5xx, a
reset blob fetch...) may have cost it, and which losses no fault explains (the collector dropped
them on its own). The emulator's request log adds each client's quota use.

It reads the emulator's output files only; it does not import the emulator (the witness stays
independent of what it checks, and of this report).

Records: NDJSON (an object per line, or an array per line, e.g. one blob per line), a JSON array,
or CSV with a header (its dialect sniffed: `,` `;` tab or `|`, or `--delimiter`); the id is the
first of `--id-field` found (dotted paths for nested JSON, default `id`, `Id`, `ID`). Ids are
compared case-insensitively (they are GUIDs or GUID-based).

Truth rows count as expected when they were visible at `--as-of` (default: the last request in the
request log, else now) and, for Management records, when some blob holding them was fetchable
(`available`). A stream counts when the collector wrote some of it, asked for it (the request log:
a content type it listed or subscribed to, a Graph list it read), or was named with `--stream`;
streams neither written nor asked for are listed as not collected.

Losses, duplicates and inventions are separate verdicts. Exit codes: 0 none of them; 3 records
missed (whatever else); 5 invented records, none missed; 4 duplicates only; 2 unreadable input,
including a run whose records are mostly unreadable (wrong format, delimiter or id field).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from emulator.audit.requests import asked_streams, costless_faults, recovered_faults, summarize_requests
from emulator.audit.text import to_text
from emulator.world.clock import format_datetime as format_time
from emulator.world.clock import parse_datetime as parse_time

EXIT_OK, EXIT_USAGE, EXIT_LOSSES, EXIT_DUPLICATES, EXIT_INVENTED = 0, 2, 3, 4, 5
CSV_DELIMITERS = ",;\t|"
DEFAULT_ID_FIELDS = ("id", "Id", "ID")


class AuditError(Exception):
    """An input file cannot be read; the message names it."""


# -- reading ------------------------------------------------------------------------------------


def _ndjson(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-empty line; value None for an unparseable line."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, orjson.loads(line)
            except orjson.JSONDecodeError:
                yield n, None


def _get(record: Any, dotted: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class Collected:
    """What the collector wrote: id -> copies, plus what could not be read."""

    counts: Counter[str] = field(default_factory=Counter)
    unparseable: int = 0  # lines or rows that are not records
    without_id: int = 0  # records with none of the id fields

    @property
    def mostly_unreadable(self) -> bool:
        """More rows/lines unreadable than read: the format, delimiter or id field is wrong, and
        any verdict would only describe the misreading."""
        return self.unparseable + self.without_id > sum(self.counts.values())


def read_records(
    paths: Iterable[Path], id_fields: tuple[str, ...], fmt: str = "auto", delimiter: str | None = None
) -> Collected:
    out = Collected()

    def take(record: Any) -> None:
        if not isinstance(record, dict):
            out.unparseable += 1
            return
        for name in id_fields:
            value = _get(record, name)
            if isinstance(value, str | int) and str(value).strip():
                out.counts[str(value).strip().lower()] += 1
                return
        out.without_id += 1

    for path in paths:
        kind = fmt
        try:
            if kind == "auto":
                kind = "csv" if delimiter or path.suffix.lower() in (".csv", ".tsv") else _sniff(path)
            if kind == "csv":
                with open(path, newline="", encoding="utf-8-sig") as f:
                    for row in csv.DictReader(f, dialect=_dialect(f, delimiter)):
                        take({k: v for k, v in row.items() if k is not None})
            elif kind == "json":
                data = orjson.loads(path.read_bytes())
                for record in data if isinstance(data, list) else [data]:
                    take(record)
            else:
                for _, value in _ndjson(path):
                    if value is None:
                        out.unparseable += 1
                    for record in value if isinstance(value, list) else [value] if value is not None else []:
                        take(record)
        except (OSError, UnicodeDecodeError, orjson.JSONDecodeError, csv.Error) as exc:
            raise AuditError(f"cannot read records {path}: {exc}") from None
    return out


def _dialect(f: Any, delimiter: str | None) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect: `--delimiter` if given, else sniffed from the head of the file (Excel in
    many locales writes `;`, exports often use tabs); plain comma CSV when sniffing cannot tell."""
    if delimiter:
        return type("Given", (csv.excel,), {"delimiter": delimiter})
    head = f.read(65536)
    f.seek(0)
    try:
        return csv.Sniffer().sniff(head, delimiters=CSV_DELIMITERS)
    except csv.Error:
        return csv.excel


def _sniff(path: Path) -> str:
    """'json' for a file holding one JSON array (possibly pretty-printed), else 'ndjson'."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):
        return "ndjson"
    try:
        orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return "ndjson"  # an array per line
    return "json"


@dataclass(frozen=True)
class TruthRow:
    stream: str
    id: str
    tenant: str
    event_time: datetime
    visible_at: datetime
    content_id: str | None
    available: bool


def read_truth(path: Path) -> list[TruthRow]:
    rows = []
    try:
        for n, value in _ndjson(path):
            if not isinstance(value, dict):
                raise AuditError(f"{path}:{n}: not a truth line")
            if value.get("upstream_lost"):  # lost inside Microsoft: no collector could have it
                continue
            rows.append(
                TruthRow(
                    stream=str(value["stream"]),
                    id=str(value["id"]).lower(),
                    tenant=str(value.get("tenant", "")),
                    event_time=parse_time(value["event_time"]),
                    visible_at=parse_time(value["visible_at"]),
                    content_id=value.get("content_id"),
                    available=bool(value.get("available", True)),
                )
            )
    except OSError as exc:
        raise AuditError(f"cannot read truth {path}: {exc.strerror}") from None
    except (KeyError, ValueError) as exc:
        raise AuditError(f"{path}: not an emulator truth file ({exc})") from None
    return rows


def read_lines(path: Path | None, what: str) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        return [v for _, v in _ndjson(path) if isinstance(v, dict)]
    except OSError as exc:
        raise AuditError(f"cannot read {what} {path}: {exc.strerror}") from None


# -- fault attribution ----------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def may_explain(fault: dict[str, Any], row: TruthRow) -> bool:
    """Whether an injected fault hit a request that would have returned `row` (see the fault log's
    coverage keys: Graph `streams`/`newest`/`oldest`, Management `stream`/`content_id`/`created_*`)."""
    if fault.get("tenant") != row.tenant:
        return False
    if row.content_id is not None:  # a Management record: its blob, or a listing window holding it
        if fault.get("api") != "management" or fault.get("stream") != row.stream:
            return False
        if fault.get("content_id") is not None:
            return bool(fault["content_id"] == row.content_id)
        lo, hi = _time(fault.get("created_from")), _time(fault.get("created_to"))
        return lo is not None and hi is not None and lo <= row.visible_at < hi
    if fault.get("api") != "graph" or row.stream not in (fault.get("streams") or ()):
        return False
    newest, oldest = _time(fault.get("newest")), _time(fault.get("oldest"))
    return (oldest is None or oldest <= row.event_time) and (newest is None or row.event_time <= newest)


# -- the report -----------------------------------------------------------------------------------


@dataclass
class StreamReport:
    expected: int = 0
    collected: int = 0
    missed: list[TruthRow] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)  # id -> copies
    not_yet_visible: int = 0
    unavailable_at_source: int = 0


@dataclass
class Audit:
    as_of: datetime
    streams: dict[str, StreamReport]
    not_collected: dict[str, int]
    invented: dict[str, int]
    collected: Collected
    faults: list[dict[str, Any]]
    causes: dict[str, list[int]]  # missed id -> indexes into faults
    clients: list[dict[str, Any]]
    recovered: set[int] = field(default_factory=set)  # faults the collector got past by asking again
    costless: set[int] = field(default_factory=set)  # faults a documented client gets past without loss
    asked: set[str] = field(default_factory=set)  # streams the request log shows it asked for
    named: bool = False  # the streams compared were named with --stream
    request_log: bool = False  # a request log was read

    @property
    def losses(self) -> bool:
        return any(s.missed for s in self.streams.values())

    @property
    def duplicates(self) -> bool:
        return any(s.duplicated for s in self.streams.values())

    @property
    def clean(self) -> bool:
        return not (self.losses or self.duplicates or self.invented)

    @property
    def exit_status(self) -> int:
        """The worst verdict's status: losses 3, inventions 5, duplicates alone 4, else 0; 2 when most
        records could not be read (no verdict is worth anything then)."""
        if self.collected.mostly_unreadable:
            return EXIT_USAGE
        if self.losses:
            return EXIT_LOSSES
        if self.invented:
            return EXIT_INVENTED
        return EXIT_DUPLICATES if self.duplicates else EXIT_OK

    def verdicts(self) -> dict[str, Any]:
        """Losses, duplicates and inventions, each on its own (one never hides behind another)."""
        missed = sum(len(s.missed) for s in self.streams.values())
        dropped = sum(1 for s in self.streams.values() for r in s.missed if not self.causes.get(r.id))
        return {
            "losses": {"found": self.losses, "missed": missed, "dropped_by_collector": dropped},
            "duplicates": {
                "found": self.duplicates,
                "ids": sum(len(s.duplicated) for s in self.streams.values()),
                "extra_copies": sum(c - 1 for s in self.streams.values() for c in s.duplicated.values()),
            },
            "invented": {"found": bool(self.invented), "ids": len(self.invented)},
        }

    @property
    def streams_from(self) -> str:
        """What chose the streams compared (the text says so when the request log was missing)."""
        if self.named:
            return "--stream"
        return "records and request log" if self.request_log else "records"

    def counted_because_asked(self) -> list[str]:
        """Streams counted only because the request log shows the collector asked for them."""
        written = {name for name, s in self.streams.items() if s.collected}
        return sorted(set(self.streams) - written) if not self.named else []

    def to_dict(self) -> dict[str, Any]:
        explained: Counter[int] = Counter(i for idx in self.causes.values() for i in idx)
        return {
            "clean": self.clean,
            "exit_status": self.exit_status,
            "verdicts": self.verdicts(),
            "as_of": format_time(self.as_of),
            "streams_from": self.streams_from,
            "counted_because_asked": self.counted_because_asked(),
            "streams": {
                name: {
                    "expected": s.expected,
                    "collected": s.collected,
                    "missed": len(s.missed),
                    "missed_explained_by_faults": sum(1 for r in s.missed if self.causes.get(r.id)),
                    "dropped_by_collector": sum(1 for r in s.missed if not self.causes.get(r.id)),
                    "duplicated": len(s.duplicated),
                    "extra_copies": sum(c - 1 for c in s.duplicated.values()),
                    "not_yet_visible": s.not_yet_visible,
                    "unavailable_at_source": s.unavailable_at_source,
                    "missed_ids": [r.id for r in s.missed],
                    "duplicated_ids": dict(sorted(s.duplicated.items())),
                }
                for name, s in sorted(self.streams.items())
            },
            "not_collected": dict(sorted(self.not_collected.items())),
            "invented": {"count": len(self.invented), "ids": sorted(self.invented)},
            "unreadable": {
                "lines": self.collected.unparseable,
                "without_id": self.collected.without_id,
                "mostly": self.collected.mostly_unreadable,
            },
            "missed": [
                {
                    "id": r.id,
                    "stream": name,
                    "tenant": r.tenant,
                    "event_time": format_time(r.event_time),
                    "faults": self.causes.get(r.id, []),
                }
                for name, s in sorted(self.streams.items())
                for r in s.missed
            ],
            "faults": {
                "total": len(self.faults),
                "recovered": len(self.recovered),
                "costless": len(self.costless),
                "by_kind": dict(Counter(str(f.get("fault")) for f in self.faults).most_common()),
                "explaining_losses": [
                    {"index": i, "missed": n, **self.faults[i]} for i, n in sorted(explained.items())
                ],
            },
            "clients": self.clients,
        }


def audit(
    truth: list[TruthRow],
    collected: Collected,
    faults: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    *,
    streams: set[str] | None = None,
    tenants: set[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    as_of: datetime | None = None,
) -> Audit:
    if as_of is None:
        stamps = [t for line in requests if (t := _time(line.get("time"))) is not None]
        as_of = max(stamps) if stamps else datetime.now(UTC)
    in_scope = [
        r
        for r in truth
        if (tenants is None or r.tenant in tenants)
        and (since is None or r.event_time >= since)
        and (until is None or r.event_time < until)
    ]
    known = {r.id for r in truth}
    invented = {i: n for i, n in collected.counts.items() if i not in known}
    seen_streams = {r.stream for r in in_scope if r.id in collected.counts}
    # A stream the collector asked for but wrote nothing of is its loss too: faults that make it
    # give up a whole stream must not make that stream disappear from the audit.
    blob_streams = {r.content_id.lower(): r.stream for r in truth if r.content_id}
    asked = asked_streams(requests, blob_streams)
    compared = streams if streams is not None else seen_streams | (asked & {r.stream for r in in_scope})
    reports: dict[str, StreamReport] = {name: StreamReport() for name in sorted(compared)}
    not_collected: Counter[str] = Counter()
    for r in in_scope:
        report = reports.get(r.stream)
        if report is None:
            not_collected[r.stream] += 1
            continue
        copies = collected.counts.get(r.id, 0)
        if copies:
            report.expected += 1
            report.collected += 1
            if copies > 1:
                report.duplicated[r.id] = copies
        elif r.visible_at > as_of:
            report.not_yet_visible += 1
        elif not r.available:
            report.unavailable_at_source += 1
        else:
            report.expected += 1
            report.missed.append(r)
    recovered = recovered_faults(faults, requests)
    costless = costless_faults(faults)
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, f in enumerate(faults):
        if i in recovered or i in costless:
            continue
        for stream in [f["stream"]] if f.get("stream") else list(f.get("streams") or ()):
            by_key[(str(f.get("tenant", "")), str(stream))].append(i)
    causes = {
        r.id: hits
        for s in reports.values()
        for r in s.missed
        if (hits := [i for i in by_key.get((r.tenant, r.stream), []) if may_explain(faults[i], r)])
    }
    return Audit(
        as_of=as_of,
        streams=reports,
        not_collected=dict(not_collected),
        invented=invented,
        collected=collected,
        faults=faults,
        causes=causes,
        clients=summarize_requests(requests),
        recovered=recovered,
        costless=costless,
        asked=asked,
        named=streams is not None,
        request_log=bool(requests),
    )


# -- command line ---------------------------------------------------------------------------------


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


def run(args: argparse.Namespace) -> int:
    try:
        when = {k: parse_time(getattr(args, k)) if getattr(args, k) else None for k in ("since", "until", "as_of")}
    except ValueError as exc:
        print(f"agent audit-collector: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        truth = read_truth(args.truth)
        collected = read_records(
            args.records, tuple(args.id_field or DEFAULT_ID_FIELDS), args.records_format, args.delimiter
        )
        faults = read_lines(args.fault_log, "fault log")
        requests = read_lines(args.requests, "request log")
    except AuditError as exc:
        print(f"agent audit-collector: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = audit(
        truth,
        collected,
        faults,
        requests,
        streams=set(args.stream) if args.stream else None,
        tenants={t.lower() for t in args.tenant} if args.tenant else None,
        **when,
    )
    data = (
        orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
        if args.format == "json"
        else to_text(result, args.show).encode()
    )
    if args.out:
        args.out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if collected.mostly_unreadable:  # result.exit_status is EXIT_USAGE: say why, on one line
        read = sum(collected.counts.values())
        print(
            f"agent audit-collector: most records are unreadable ({collected.unparseable + collected.without_id} "
            f"unreadable, {read} read); check --records-format, --delimiter and --id-field",
            file=sys.stderr,
        )
    return result.exit_status
