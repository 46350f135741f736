"""What a person at a terminal reads: tables for `reconcile`, `collect --once` and `status`, the text of
`verify` and `triangulate`, and the progress lines (the "what to do next" a reconcile report ends with
is `next_steps.py`).

Machine output (JSON, the report formats of contract 4) is owned by the commands and the report
module; this module only turns their results into text for a terminal, so a script that pipes a
command keeps getting exactly what it got before. Tenants are shown by label (the config's `name`,
else the GUID); the GUID stays in every JSON output.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from agent.archive.codec import parse_time
from agent.archive.verify_report import UNDETECTABLE_WITHOUT_ANCHORS, VerifyReport
from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport, iso

if TYPE_CHECKING:
    from agent.service.status import Row
    from agent.triangulate.engine import PairResult, Report


def table(head: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> list[str]:
    """Columns as wide as their widest cell; `right` names the columns aligned right (numbers)."""
    cells = [[str(c) for c in head]] + [[("-" if c is None or c == "" else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def _when(us: int) -> str:
    return datetime.fromtimestamp(us / US, UTC).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------- reconcile
def reconcile_text(report: ReconcileReport, labels: Mapping[str, str], steps: Sequence[str],
                   out: str | None = None, fmt: str = "json") -> str:
    """The summary a terminal shows: a table per stream, the gaps, the verdict, where the report went."""
    lines = [f"Reconcile against {report.siem}: {_when(report.since)} to {_when(report.until)} UTC, "
             f"buckets of {duration(report.bucket_us // US)}", ""]
    lines += table(("tenant", "stream", "archive", "SIEM", "missing in SIEM", "not in archive", "duplicated", "state"),
                   [(labels.get(s.tenant, s.tenant), s.stream, s.agent_count, s.siem_count, len(s.missing_in_siem),
                     len(s.missing_in_agent), len(s.duplicates_in_siem), _state(s)) for s in report.streams],
                   right=(2, 3, 4, 5, 6))
    for skip in report.skipped:
        lines.append(f"skipped {skip['start']} to {skip['end']}: {skip['reason']}")
    for s in report.streams:
        detail = _stream_detail(s)
        if detail:
            lines += ["", f"{s.stream} ({labels.get(s.tenant, s.tenant)}):", *detail]
    lines += _backfill_text(report)
    lines += ["", f"Result: {verdict(report)}."]
    if out:
        lines.append(f"Report ({fmt}) written to {out}")
    if steps:
        lines += ["", "What to do next:", *(f"  {step}" for step in steps)]
    return "\n".join(lines)


def verdict(report: ReconcileReport) -> str:
    if report.has_gaps and report.backfill_closed and not any(s.missing_in_agent for s in report.streams):
        return "gaps found and closed by the backfill"
    if report.has_gaps:
        return "GAPS FOUND"
    return "no gaps" if report.complete else "INCOMPLETE: some buckets could not be verified (not the same as no gaps)"


def _state(s: StreamReport) -> str:
    if s.unverified:
        return "unverified"
    return "gaps" if s.has_gaps else "ok"


def _stream_detail(s: StreamReport) -> list[str]:
    out = [f"  gap {iso(g.start)} to {iso(g.end)}: {g.missing} missing in the SIEM" for g in s.gaps]
    out += [f"  unverified {iso(a)} to {iso(b)}: {why}" for a, b, why in s.unverified]
    if s.missing_in_agent:
        out.append(f"  {len(s.missing_in_agent)} in the SIEM but not in the archive, e.g. "
                   f"{', '.join(sorted(s.missing_in_agent)[:3])}")
    out += [f"  note: {n}" for n in s.notes]
    return out


def _backfill_text(report: ReconcileReport) -> list[str]:
    b = report.backfill
    if b is None:
        return []
    if b.get("dry_run"):
        rows = [(s.stream, x["missing"], x["already_acknowledged"], x["would_send"], x["would_send_batches"],
                 x["would_send_bytes"]) for s in report.streams if (x := s.backfill) and s.missing_in_siem]
        return ["", f"Backfill preview (dry run, nothing sent) to {b.get('target', '')}:",
                *table(("stream", "missing", "acknowledged earlier", "would send", "batches", "bytes"), rows,
                       right=(1, 2, 3, 4, 5))]
    sent: list[tuple[object, ...]] = [
        (s.stream, x.get("destination", ""), x["sent"], x["acknowledged"], x["already_present"], x["failed"],
             x["in_doubt"], x["remaining"]) for s in report.streams if (x := s.backfill) and s.missing_in_siem]
    lines = ["", f"Backfill to {b.get('target', '')}:",
             *table(("stream", "destination", "sent", "acknowledged", "already present", "failed", "in doubt",
                     "remaining"), sent, right=(2, 3, 4, 5, 6, 7))]
    if b.get("error"):
        lines.append(f"backfill stopped: {b['error']}")
    return lines


def duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------- collect --once
def collect_text(outcomes: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    rows = [(labels.get(o["tenant"], o["tenant"]), o["stream"], "ok" if o["ok"] else "FAILED", o["windows"],
             o["fetched"], o["stored"], o["duplicates"], (o["cursor"] or "")[:19], o["gaps_total"] or "",
             o["error"] or "") for o in outcomes]
    lines = table(("tenant", "stream", "result", "windows", "fetched", "stored", "duplicates", "cursor",
                   "gaps", "error"), rows, right=(3, 4, 5, 6, 8))
    failed = sum(1 for o in outcomes if not o["ok"])
    stored = sum(int(o["stored"]) for o in outcomes)
    lines += ["", f"{len(outcomes)} stream(s), {stored} record(s) stored"
              + (f", {failed} FAILED (exit 1; `agent status` shows why)" if failed else ", all ok")]
    return "\n".join(lines)


# ---------------------------------------------------------------- status
def ago(text: str | None, now: datetime) -> str:
    """How long before `now` the RFC 3339 `text` was, coarsely ("3h ago"); "never" when there is none."""
    if not text:
        return "never"
    seconds = int((now - parse_time(text)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def status_text(data: Sequence[Row], now: datetime) -> str:
    """`agent status` on a terminal: one row per stream, then which GUID each tenant label stands for."""

    def siem(r: Row) -> str:
        s = r.siem
        if not s:
            return "not reconciled"
        if s["state"] == "gap":
            return f"{s['missing_in_siem']} missing ({ago(s['checked_at'], now)})"
        return f"{s['state']} ({ago(s['checked_at'], now)})"

    def gaps(r: Row) -> str:
        closed = len(r.gaps) - len(r.open_gaps)
        return f"{len(r.open_gaps)}" + (f" (+{closed} recovered)" if closed else "") if r.gaps else "0"

    lines = table(("tenant", "stream", "state", "last success", "cursor", "records", "gaps", "SIEM", "last error"),
                  [(r.tenant, r.stream, ", ".join(r.states), ago(r.last_success, now), (r.cursor or "")[:19],
                    r.records, gaps(r), siem(r), (r.last_error or "")[:80]) for r in data], right=(5,))
    ids = {(r.tenant, r.tenant_id) for r in data if r.tenant != r.tenant_id}
    lines += [f"tenant {label} = {tid}" for label, tid in sorted(ids)]
    return "\n".join(lines)


# ---------------------------------------------------------------- verify
def verify_text(r: VerifyReport) -> str:
    """`agent verify` on a terminal: the verdict with what was checked, each damaged object, then what
    could not be checked (never shown as intact)."""
    checked = (f"{r.streams} streams, {r.manifests} manifests, {r.segments} segments checked"
               f" against {r.anchors} anchor{'s' if r.anchors != 1 else ''}")
    if r.ok and (r.never_anchored or r.versions_unchecked):
        lines = [f"Archive consistent, but not every check could run; see NOT CHECKED below ({checked})."]
    elif r.ok:
        lines = [f"Archive intact: {checked}."]
    else:
        lines = [f"Archive DAMAGED: {len(r.missing)} segments missing, {len(r.altered)} altered, "
                 f"{len(r.unexpected)} unexpected, {len(r.broken_links)} broken chain links, "
                 f"{len(r.sidecars)} sidecars damaged, {len(r.anchor_problems)} anchor mismatches, "
                 f"{len(r.quarantined)} quarantined, {len(r.hidden)} hidden by delete markers "
                 f"({checked})."]
    lines += [f"  missing     {p.key} (listed in {p.manifest})" for p in r.missing]
    lines += [f"  altered     {p.key}: {p.detail} (listed in {p.manifest})" for p in r.altered]
    lines += [f"  sidecar     {p.key}: {p.detail} (listed in {p.manifest})" for p in r.sidecars]
    lines += [f"  unexpected  {k} (in no manifest)" for k in r.unexpected]
    lines += [f"  quarantined {k} (not written by this agent; never read, exported or backfilled)"
              for k in r.quarantined]
    lines += [f"  chain       tenant={b.tenant} stream={b.stream} seq {b.seq}: {b.kind}: {b.detail}"
              for b in r.broken_links]
    lines += [f"  anchor      tenant={p.tenant} stream={p.stream} seq {p.seq}: {p.kind}: {p.detail} "
              f"(anchor {p.anchor})" for p in r.anchor_problems]
    lines += [f"  deleted     {h.key}: a delete marker hides version {h.kept_version}; restore with "
              f"`{h.restore(r.restore_bucket, r.restore_prefix)}`" for h in r.hidden]
    lines += _verify_notes(r)
    return "\n".join(lines)


def _verify_notes(r: VerifyReport) -> list[str]:
    notes = [f"  note        {pair}: {n} newest manifest(s) not anchored yet (published at the next pass)"
             for pair, n in sorted(r.unanchored.items())]
    if r.unhashed_sidecars:
        notes.append(f"  note        {r.unhashed_sidecars} sidecars predate sidecar hashes and could not "
                     "be checked")
    notes += [f"  NOT CHECKED {pair}: no anchor holds a head of this stream yet (the next pass publishes "
              "one); truncation, rollback or a rewritten chain would not show" for pair in r.never_anchored]
    if r.versions_unchecked:
        notes.append(f"  NOT CHECKED delete markers: {r.versions_unchecked}")
    if not r.anchors:
        notes.append("  NOT CHECKED no [[anchors]] configured, so verify cannot detect:")
        notes += [f"                - {what}" for what in UNDETECTABLE_WITHOUT_ANCHORS]
        notes.append("              configure [[anchors]] (docs/integrity.md)")
    return notes


# ---------------------------------------------------------------- triangulate
def triangulate_text(report: Report) -> str:
    """`agent triangulate --format text`: per pair, the verdict of its hours, each gap and the ids lacking."""
    from agent.triangulate.report import gap_line

    lines = [f"Triangulation {report.as_dict()['window']['since']} to {report.as_dict()['window']['until']}"]
    for p in report.pairs:
        lines.append(_pair_summary(p))
        gaps = p.gaps()
        for g in gaps:
            lines.append("  GAP: " + gap_line(p, g))
        if p.missing_in_a:
            lines.append(f"  {p.spec.b} records whose {p.spec.a} sibling is missing: " + _first_ids(p.missing_in_a))
        if p.missing_in_b:
            lines.append(f"  {p.spec.a} records whose {p.spec.b} sibling is missing: " + _first_ids(p.missing_in_b))
        if not p.judged:
            lines.append("  NOT CHECKED: no hour is settled and collected on both sides yet")
        elif not gaps:
            lines.append(f"  no pipeline lacks what its sibling has in the {p.judged} judged hours")
    if not report.pairs:
        lines.append("no pair of sibling streams in the selection")
    return "\n".join(lines) + "\n"


def _pair_summary(p: PairResult) -> str:
    from agent.triangulate.report import kind

    verdicts = Counter(b.verdict for b in p.buckets)
    parts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    ratio = "unknown" if p.ratio is None else f"{p.ratio:.3f}"
    return (f"{p.spec.a} <-> {p.spec.b} ({kind(p)}), tenant {p.tenant}: "
            f"{p.spec.mapping}-level mapping, confidence {p.spec.confidence}; b/a ratio {ratio}; hours: {parts}")


def _first_ids(ids: list[str], shown: int = 20) -> str:
    """The first ids on a terminal; every one is in the JSON, Markdown and HTML reports."""
    more = f" ... and {len(ids) - shown} more (all in --format json)" if len(ids) > shown else ""
    return " ".join(ids[:shown]) + more


# ---------------------------------------------------------------- progress (terminal only)
class Line:
    """One status line that rewrites itself on a terminal, at most every `every` seconds. Only ever
    built when the stream is a TTY: progress never reaches logs, pipes or files."""

    def __init__(self, out: TextIO, every: float = 0.5) -> None:
        self.out, self.every = out, every
        self.started = time.monotonic()
        self._last, self._width, self.drawn = 0.0, 0, False

    def draw(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last, self.drawn = now, True
        self.out.write("\r" + text.ljust(self._width))
        self.out.flush()
        self._width = len(text)

    def end(self, text: str | None = None) -> None:
        if text is not None:
            self.draw(text, force=True)
        if self.drawn:
            self.out.write("\n")
            self.out.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def eta(fraction: float, elapsed: float) -> str:
    """Time left at the pace so far; "?" until there is enough to judge."""
    if fraction <= 0.01 or elapsed < 1:
        return "?"
    return short_time(elapsed * (1 - fraction) / fraction)


def short_time(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def steps(out: TextIO, what: str, unit: str) -> Callable[..., None]:
    """Progress of `done` of `total` (reconcile: streams; backfill: records), with rate and ETA."""
    line = Line(out)

    def show(done: int, total: int, label: str = "") -> None:
        fraction = done / total if total else 1.0
        rate = done / line.elapsed if line.elapsed > 0 else 0.0
        text = (f"{what} {done}/{total} {unit} ({100 * fraction:.0f}%)  {rate:,.1f} {unit}/s  "
                f"ETA {eta(fraction, line.elapsed)}  {label}")
        if done >= total:
            line.end(text)
        else:
            line.draw(text, force=done == 0)

    return show


class CollectProgress:
    """`collect` on a terminal: share of each stream's span covered (windows whose records are stored),
    records fetched, the rate and an ETA, for a first catch-up of days."""

    def __init__(self, out: TextIO, streams: int, until: datetime | None = None) -> None:
        self.line = Line(out)
        self.streams, self.until = streams, until
        self.spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}  # start, covered through
        self.fetched: dict[tuple[str, str], int] = {}
        self.windows: dict[tuple[str, str], int] = {}

    def __call__(self, outcome: Any, window: Any) -> None:
        key = (outcome.tenant, outcome.stream)
        start, covered = self.spans.get(key, (window.start, window.start))
        if outcome.cursor is not None and outcome.windows:
            covered = max(covered, outcome.cursor)
        self.spans[key] = (min(start, window.start), covered)
        self.fetched[key], self.windows[key] = outcome.fetched, outcome.windows
        self.line.draw(self.text())

    def fraction(self) -> float:
        end = self.until or datetime.now(UTC)
        parts = [min(1.0, max(0.0, (c - s) / (end - s))) if end > s else 1.0 for s, c in self.spans.values()]
        return sum(parts) / max(self.streams, len(parts), 1)

    def text(self) -> str:
        records = sum(self.fetched.values())
        f = self.fraction()
        return (f"collect {100 * f:.0f}%  {sum(self.windows.values())} windows  {records:,} records  "
                f"{records / max(self.line.elapsed, 1e-3):,.0f}/s  ETA {eta(f, self.line.elapsed)}  "
                f"({len(self.spans)}/{self.streams} streams)")

    def end(self) -> None:
        if self.line.drawn:
            self.line.end(self.text())
