"""The verdicts of `agent audit-collector`: the collector's records set against the emulator's truth,
per stream missed, duplicated and invented, each missed record beside the injected faults that may
have cost it.

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

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emulator.audit.inputs import Collected, TruthRow, read_lines, read_records, read_truth
from emulator.audit.requests import asked_streams, costless_faults, recovered_faults, summarize_requests
from emulator.world.clock import format_datetime as format_time
from emulator.world.clock import parse_datetime as parse_time

EXIT_OK, EXIT_USAGE, EXIT_LOSSES, EXIT_DUPLICATES, EXIT_INVENTED = 0, 2, 3, 4, 5


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


def audit_files(
    *,
    truth: Path,
    records: Sequence[Path],
    id_fields: tuple[str, ...],
    records_format: str = "auto",
    delimiter: str | None = None,
    fault_log: Path | None = None,
    request_log: Path | None = None,
    streams: set[str] | None = None,
    tenants: set[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    as_of: datetime | None = None,
) -> Audit:
    """Read the four inputs and audit them; an unreadable input raises `AuditError` naming it."""
    truth_rows = read_truth(truth)
    collected = read_records(records, id_fields, records_format, delimiter)
    faults = read_lines(fault_log, "fault log")
    requests = read_lines(request_log, "request log")
    return audit(
        truth_rows,
        collected,
        faults,
        requests,
        streams=streams,
        tenants=tenants,
        since=since,
        until=until,
        as_of=as_of,
    )
