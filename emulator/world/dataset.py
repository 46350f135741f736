"""Everything the emulator will ever serve, built once at start-up from the scenario.

Records are serialized to JSON bytes here, once (orjson), so serving a page is a join of bytes:
the agent's throughput benchmark must find the agent, not the emulator, to be the bottleneck.
Each record also carries its ground truth (visible_at, in_siem), which `truth.py` writes out and
the SIEM emulators can read, so every witness draws from the same seeded decisions.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from emulator.world import fanout, jsontext, security_records
from emulator.world.catalog import STREAMS, StreamInfo
from emulator.world.clock import creation_time, graph_time, parse_iso
from emulator.world.records import GENERATORS
from emulator.world.scenario import Scenario, StreamPlan, Tenant

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    """One distinct record and the facts about it."""

    id: str
    ticks: int  # event time
    event_time: str  # event time as the record spells it
    body: bytes
    visible: int = 0  # when the API first serves it
    dup_body: bytes | None = None  # a second serving, keys reordered as Microsoft does
    in_siem: bool = True
    exempt_retention: bool = False  # corpus records kept with their original (old) times
    available: bool = True  # False: only in a Management blob that never becomes fetchable
    content_id: str = ""  # Management: the first blob holding it
    late: bool = False  # drawn as a late record (late_fraction)
    upstream_lost: bool = False  # an [[upstream.gaps]] took it: no API ever serves it
    sibling: tuple[str, str] | None = None  # (stream, id) of the same event in the sibling pipeline
    superseded: int = 0  # security streams: when a later version replaces this one in the API (0: never)
    created: int = 0  # security streams: createdDateTime, which `$filter` may bound as well


@dataclass
class StreamData:
    """One stream of one tenant. Graph streams keep entries newest first (the order served)."""

    tenant: str
    info: StreamInfo
    entries: list[Entry]
    keys: list[tuple[int, str]] = field(default_factory=list)  # (-ticks, id), ascending = served order
    lost: list[Entry] = field(default_factory=list)  # upstream-lost: in the truth, never served
    exempt: bool = False  # some records ignore retention (corpus served with its original times)

    def index(self) -> None:
        self.entries.sort(key=lambda e: (-e.ticks, e.id))
        self.keys = [(-e.ticks, e.id) for e in self.entries]
        self.exempt = any(e.exempt_retention for e in self.entries)


def _reordered(record: dict[str, Any]) -> bytes:
    return orjson.dumps(dict(reversed(list(record.items()))))


def _generate(scn: Scenario, tenant: Tenant, name: str, plan: StreamPlan, origin: int) -> list[Entry]:
    info = STREAMS[name]
    rng = random.Random(f"{scn.seed}|{tenant.id}|{name}")
    make = GENERATORS[name]
    late_from = max(scn.start, scn.end - plan.late_window)
    span = scn.end - scn.start
    out = []
    for _ in range(plan.records):
        late = rng.random() < plan.late_fraction
        ticks = rng.randint(late_from, scn.end) if late else scn.start + rng.randrange(span)
        record = make(rng, ticks, tenant.id)
        entry = Entry(
            id=record[info.id_field],
            ticks=ticks,
            event_time=record[info.time_field],
            body=orjson.dumps(record),
            late=late,
        )
        entry.visible = max(origin + plan.late_delay if late else origin, ticks)
        if rng.random() < plan.duplicate_fraction:
            entry.dup_body = _reordered(record)
        out.append(entry)
    return out


def _versions(scn: Scenario, tenant: Tenant, name: str, plan: StreamPlan, origin: int) -> list[Entry]:
    """Defender alerts or incidents, one entry per version (id = `<id>@<lastUpdateDateTime>`).

    Graph serves only an alert's current version. A version replaced before the emulator starts
    is never served, so it is not generated; one replaced later (a late update, `late_fraction`)
    is served from its visibility until its successor's, and the truth says so (`superseded_at`).
    """
    rng = random.Random(f"{scn.seed}|{tenant.id}|{name}")
    make = security_records.GENERATORS[name]
    late_from = max(scn.start, scn.end - plan.late_window)
    out: list[Entry] = []
    for _ in range(plan.records):
        created = scn.start + rng.randrange(scn.end - scn.start)
        first = make(rng, created, tenant.id)
        chain = [(created, first, max(origin, created))]
        if rng.random() < scn.security.update_fraction and created < scn.end:
            if rng.random() < plan.late_fraction:  # triaged just before start, published late
                at = rng.randint(max(created + 1, late_from), scn.end)
                chain.append((at, security_records.update(first, rng, at), origin + plan.late_delay))
            else:
                at = created + 1 + rng.randrange(scn.end - created)
                chain = [(at, security_records.update(first, rng, at), max(origin, at))]
        for n, (ticks, record, visible) in enumerate(chain):
            entry = Entry(id=f"{record['id']}@{record['lastUpdateDateTime']}", ticks=ticks,
                          event_time=record["lastUpdateDateTime"], body=orjson.dumps(record), visible=visible,
                          created=created, late=visible > origin)
            if n + 1 < len(chain):
                entry.superseded = chain[n + 1][2]
            if rng.random() < plan.duplicate_fraction:
                entry.dup_body = _reordered(record)
            out.append(entry)
    return out


def _record_ticks(info: StreamInfo, value: Any, path: Path, line: int) -> int:
    try:
        return parse_iso(str(value))
    except ValueError:
        raise ValueError(f"{path}:{line}: {info.time_field} {value!r} is not a timestamp") from None


def _corpus(scn: Scenario, name: str, plan: StreamPlan, origin: int) -> list[Entry]:
    """Corpus records, verbatim ('keep') or with only the time field moved into the span ('rebase')."""
    assert plan.corpus is not None
    info = STREAMS[name]
    lines = [ln for ln in plan.corpus.read_bytes().splitlines() if ln.strip()]
    out: list[Entry] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        try:  # any valid JSON: lone surrogates, huge numbers, deep nesting (served verbatim in 'keep')
            record = jsontext.loads(line)
        except ValueError as exc:
            raise ValueError(f"{plan.corpus}:{n}: not JSON ({exc})") from None
        rid = record.get(info.id_field) if isinstance(record, dict) else None
        if not isinstance(rid, str) or rid in seen:
            log.warning(
                "Corpus record skipped (no %s or a repeated id).",
                info.id_field,
                extra={"file": str(plan.corpus), "line": n},
            )
            continue
        seen.add(rid)
        if plan.corpus_times == "keep":
            ticks = _record_ticks(info, record.get(info.time_field), plan.corpus, n)
            out.append(
                Entry(
                    id=rid,
                    ticks=ticks,
                    event_time=str(record[info.time_field]),
                    body=line,
                    visible=origin,
                    exempt_retention=True,
                )
            )
            continue
        ticks = scn.start + (scn.end - scn.start) * (len(out) + 1) // (len(lines) + 1)
        record[info.time_field] = graph_time(ticks) if info.api == "graph" else creation_time(ticks)
        out.append(
            Entry(
                id=rid,
                ticks=ticks,
                event_time=record[info.time_field],
                body=_rebased(record, plan.corpus, n),
                visible=max(origin, ticks),
            )
        )
    return out


def _rebased(record: dict[str, Any], path: Path, line: int) -> bytes:
    """A rebased corpus record, re-serialised; JSON orjson cannot write is served only in 'keep' mode."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"{path}:{line}: {exc}; serve such records with corpus_times = \"keep\" "
                         f"(byte for byte)") from None
def _fan_out(scn: Scenario, tenant: Tenant, made: dict[str, list[Entry]], origin: int) -> None:
    """Derive the audit log's sibling records from the Graph events (emulator/world/fanout.py).

    Only generated streams take part (a corpus is served as published). The audit stream's own
    draws keep only the record types that have no Graph sibling in the scenario, so a scenario
    without a sibling pair gets exactly the data it always had.
    """
    audit = fanout.AUDIT_STREAM
    paired = [
        g for g in fanout.SIBLING_TYPES
        if g in made and audit in made and not tenant.streams[g].corpus and not tenant.streams[audit].corpus
    ]
    if not paired:
        return
    types = {fanout.SIBLING_TYPES[g] for g in paired}
    kept = [e for e in made[audit] if fanout.record_type(e.body) not in types]
    plan = tenant.streams[audit]
    rng = random.Random(f"{scn.seed}|fanout|{tenant.id}")
    for g in paired:
        derive = fanout.from_directory_audit if g == "graph.directory_audits" else fanout.from_signin
        for src in made[g]:
            record = derive(rng, orjson.loads(src.body), src.ticks, tenant.id)
            e = Entry(
                id=record["Id"], ticks=src.ticks, event_time=record["CreationTime"],
                body=orjson.dumps(record), visible=max(origin, src.ticks), sibling=(g, src.id),
            )
            if rng.random() < plan.duplicate_fraction:
                e.dup_body = _reordered(record)
            src.sibling = (audit, e.id)
            kept.append(e)
    made[audit] = kept


def _upstream(scn: Scenario, tenant: Tenant, name: str, entries: list[Entry]) -> list[Entry]:
    """Mark the records an [[upstream.gaps]] took (seeded, per record); returns the lost ones."""
    gaps = [g for g in scn.upstream_gaps if g.stream == name]
    if not gaps:
        return []
    rng = random.Random(f"{scn.seed}|upstream|{tenant.id}|{name}")
    for e in entries:
        for g in gaps:
            if g.start <= e.ticks < g.end and rng.random() < g.drop_fraction:
                e.upstream_lost, e.in_siem, e.available = True, False, False
                break
    return [e for e in entries if e.upstream_lost]


def _siem(scn: Scenario, tenant: Tenant, name: str, entries: list[Entry]) -> None:
    """Decide, seeded and per record, which records the primary SIEM lost ([[siem.gaps]])."""
    gaps = [g for g in scn.siem_gaps if g.stream in ("*", name)]
    if not gaps:
        return
    rng = random.Random(f"{scn.seed}|siem|{tenant.id}|{name}")
    for e in entries:
        for g in gaps:
            if g.start <= e.ticks < g.end and rng.random() < g.drop_fraction:
                e.in_siem = False
                break


@dataclass
class Dataset:
    """All streams of all tenants: {tenant id: {stream name: StreamData}}."""

    streams: dict[str, dict[str, StreamData]]

    def get(self, tenant: str, stream: str) -> StreamData | None:
        return self.streams.get(tenant, {}).get(stream)

    def all(self) -> list[StreamData]:
        return [sd for per in self.streams.values() for sd in per.values()]


def build(scn: Scenario, origin: int) -> Dataset:
    """Generate (or load) every stream; Graph streams are indexed, Management ones are left for blobs."""
    out: dict[str, dict[str, StreamData]] = {}
    for tenant in scn.tenants:
        per = out.setdefault(tenant.id, {})
        made = {
            name: _corpus(scn, name, plan, origin) if plan.corpus
            else _versions(scn, tenant, name, plan, origin) if STREAMS[name].api == "security"
            else _generate(scn, tenant, name, plan, origin)
            for name, plan in tenant.streams.items()
        }
        _fan_out(scn, tenant, made, origin)
        for name, entries in made.items():
            lost = _upstream(scn, tenant, name, entries)
            if lost:
                entries = [e for e in entries if not e.upstream_lost]
            # The primary SIEM's connector reads the same API: what no API serves, it never gets.
            _siem(scn, tenant, name, entries)
            sd = StreamData(tenant=tenant.id, info=STREAMS[name], entries=entries, lost=lost)
            if sd.info.api in ("graph", "security"):
                sd.index()
            per[name] = sd
    return Dataset(out)
