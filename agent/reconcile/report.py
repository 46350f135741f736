"""The reconcile report: what was compared and found, as data, JSON (contract 4) and Markdown.

The JSON keys per stream are fixed by contract 4 (`agent_count`, `siem_count`, `missing_in_siem`,
`missing_in_agent`, `duplicates_in_siem`, `gaps`); everything else is additive. The HTML
rendering lives in `reconcile/html.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.reconcile.diff import US, Gap

# Characters that start Markdown or inline HTML; `|` splits a table cell (GFM escapes it with `\|`
# even inside code spans). Line breaks and other control characters are shown, never passed on.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _shown(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def md_text(value: object) -> str:
    """A value (an id, a reason a SIEM gave) as inert Markdown text on one line.

    Ids and error texts come from the SIEM; unescaped, a newline or a `|` in one would add rows to
    the report's tables, and brackets would make links.
    """
    return _CONTROL.sub(lambda m: "\\" + _shown(m), _MD_SPECIAL.sub(r"\\\1", str(value)))


def md_code(value: object, table: bool = False) -> str:
    """A value as a Markdown code span that cannot end early: the fence is longer than any run of
    backticks inside, control characters are shown as \\uXXXX, and in a table `|` is escaped."""
    text = _CONTROL.sub(_shown, str(value))
    text = text.replace("|", "\\|") if table else text
    fence = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def tenant_shown(tenant: str, labels: Mapping[str, str] | None) -> tuple[str, str]:
    """(label, GUID) of a tenant as `agent status` names it: the config's `name`, with the GUID kept
    beside it; ("", GUID) when the tenant has no label of its own (or none was given)."""
    label = (labels or {}).get(tenant, "")
    return ("" if label == tenant else label), tenant


def tenant_md(tenant: str, labels: Mapping[str, str] | None) -> str:
    label, guid = tenant_shown(tenant, labels)
    return f"{md_text(label)} ({md_text(guid)})" if label else md_text(guid)


def iso(us: int) -> str:
    """Microseconds since the epoch as RFC 3339 UTC (seconds precision when whole)."""
    dt = datetime.fromtimestamp(us / US, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if us % US else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class BucketRow:
    """One bucket for the coverage chart: records in the archive, rows in the SIEM, ours missing there."""

    start: int
    agent: int
    siem: int
    missing: int = 0
    holes: int = 0  # records the SIEM has and the archive lacks
    unverified: bool = False


@dataclass(slots=True)
class StreamReport:
    tenant: str
    stream: str
    agent_count: int = 0
    siem_count: int = 0  # rows, duplicates included
    missing_in_siem: set[str] = field(default_factory=set)
    missing_in_agent: set[str] = field(default_factory=set)
    duplicates_in_siem: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    buckets: list[BucketRow] = field(default_factory=list)
    unverified: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, why)
    recollected: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    queries: int = 0
    missing_at: dict[str, int] = field(default_factory=dict)  # id missing in the SIEM -> its bucket (us)
    backfill: dict[str, Any] | None = None  # after --backfill / --dry-run: what was sent and acknowledged
    siem_answered: bool = False  # the window's count query came back; False = siem_count is unknown

    @property
    def has_gaps(self) -> bool:
        return bool(self.missing_in_siem or self.missing_in_agent)

    @property
    def verified(self) -> bool:
        """Every bucket of the window was compared; False = some or all of it could not be checked."""
        return not self.unverified

    def siem_cell(self) -> str:
        """The SIEM count for a human table: never a 0 that was not counted."""
        return str(self.siem_count) if self.siem_answered else "not verified"

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "stream": self.stream,
            "agent_count": self.agent_count,
            "siem_count": self.siem_count,
            "missing_in_siem": sorted(self.missing_in_siem),
            "missing_in_agent": sorted(self.missing_in_agent),
            "duplicates_in_siem": sorted(self.duplicates_in_siem),
            "duplicate_rows_in_siem": sum(n - 1 for n in self.duplicates_in_siem.values()),
            "gaps": [{"start": iso(g.start), "end": iso(g.end), "missing": g.missing} for g in self.gaps],
            "verified": self.verified,
            "siem_answered": self.siem_answered,
            "unverified": [{"start": iso(s), "end": iso(e), "reason": why} for s, e, why in self.unverified],
            "recollected": sorted(self.recollected),
            "notes": self.notes,
            "queries": self.queries,
            **({"backfill": self.backfill} if self.backfill is not None else {}),
        }


@dataclass(slots=True)
class ReconcileReport:
    since: int
    until: int
    siem: str
    bucket_us: int
    generated_at: int
    streams: list[StreamReport] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # windows left out (settle time)
    backfill: dict[str, Any] | None = None  # after --backfill / --dry-run: the run's summary

    @property
    def backfill_closed(self) -> bool:
        """After a backfill: every id missing in the SIEM is now acknowledged or present there."""
        return self.backfill is not None and not self.backfill.get("dry_run") and all(
            not s.missing_in_siem or (s.backfill is not None and s.backfill.get("remaining", 1) == 0)
            for s in self.streams)

    @property
    def has_gaps(self) -> bool:
        return any(s.has_gaps for s in self.streams)

    @property
    def complete(self) -> bool:
        return not any(s.unverified for s in self.streams)

    @property
    def verdict(self) -> str:
        """`gaps` (something is missing), `unverified` (nothing found, but not all could be checked)
        or `no_gaps` (every bucket compared and equal). "Could not verify" is never "no gaps"."""
        if self.has_gaps:
            return "gaps"
        return "no_gaps" if self.complete else "unverified"

    def unverified_reasons(self) -> list[str]:
        """The distinct reasons parts of the window could not be checked, in report order."""
        return list(dict.fromkeys(why for s in self.streams for _, _, why in s.unverified))

    def unverified_streams(self) -> list[StreamReport]:
        return [s for s in self.streams if s.unverified]

    def unverified_summary(self) -> str:
        """"Could not verify ..." in one sentence: which streams (whole or in part) and what the archive
        holds in the buckets that could not be checked (its real count, never 0 for unknown)."""
        whole = [s for s in self.streams if s.unverified and not s.siem_answered]
        part = [s for s in self.streams if s.unverified and s.siem_answered]
        held = sum(s.agent_count for s in whole) + sum(b.agent for s in part for b in s.buckets if b.unverified)
        if whole:
            what = f"{len(whole)} of {len(self.streams)} stream(s)" + (f" and parts of {len(part)} more"
                                                                      if part else "")
        else:
            what = f"parts of {len(part)} of {len(self.streams)} stream(s)"
        return (f"Could not verify {what}: the archive holds {held} record(s) there; "
                "the SIEM's side is unknown, not empty")

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": {"since": iso(self.since), "until": iso(self.until)},
            "siem": self.siem,
            "bucket_seconds": self.bucket_us // US,
            "generated_at": iso(self.generated_at),
            "has_gaps": self.has_gaps,
            "complete": self.complete,
            "verdict": self.verdict,
            "unverified_reasons": self.unverified_reasons(),
            "skipped": self.skipped,
            "streams": [s.as_dict() for s in self.streams],
            **({"backfill": self.backfill} if self.backfill is not None else {}),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2)


def to_markdown(report: ReconcileReport, max_ids: int = 20, labels: Mapping[str, str] | None = None) -> str:
    """A human summary: one table row per stream, then gaps and sample ids for streams with gaps.
    `labels` (tenant GUID -> the config's name) shows tenants as `agent status` does, GUID beside."""
    lines = [f"# Reconciliation against {report.siem}", "",
             f"Window {iso(report.since)} to {iso(report.until)}, buckets of {report.bucket_us // US} s.", ""]
    lines += headline_markdown(report)
    for skip in report.skipped:
        lines.append(f"Skipped {skip['start']} to {skip['end']}: {md_text(skip['reason'])}.")
    lines += ["", "| tenant | stream | archive | SIEM | missing in SIEM | missing in archive | duplicated in SIEM |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for s in report.streams:
        lines.append(f"| {tenant_md(s.tenant, labels)} | {s.stream} | {s.agent_count} | {s.siem_cell()} "
                     f"| {len(s.missing_in_siem)} | {len(s.missing_in_agent)} | {len(s.duplicates_in_siem)} |")
    for s in report.streams:
        if not (s.has_gaps or s.unverified or s.notes):
            continue
        lines += ["", f"## {s.stream} ({tenant_md(s.tenant, labels)})", ""]
        lines += [f"- gap {iso(g.start)} to {iso(g.end)}: {g.missing} missing in the SIEM" for g in s.gaps]
        lines += [f"- unverified {iso(a)} to {iso(b)}: {md_text(why)}" for a, b, why in s.unverified]
        lines += [f"- note: {md_text(n)}" for n in s.notes]
        for label, ids in (("missing in the SIEM", s.missing_in_siem), ("missing in the archive", s.missing_in_agent)):
            if ids:
                shown = sorted(ids)[:max_ids]
                more = f" (+{len(ids) - len(shown)} more)" if len(ids) > len(shown) else ""
                lines.append(f"- {label}: " + ", ".join(md_code(i) for i in shown) + more)
    lines += backfill_markdown(report)
    verdict = {"gaps": "GAPS FOUND", "unverified": "COULD NOT VERIFY", "no_gaps": "no gaps"}[report.verdict]
    if report.has_gaps and not report.complete:
        verdict += " (and parts could not be verified)"
    if report.has_gaps and report.backfill_closed and not any(s.missing_in_agent for s in report.streams):
        verdict = "gaps found and closed by the backfill"
    lines += ["", f"**Result: {verdict}.**", ""]
    return "\n".join(lines)


def headline_markdown(report: ReconcileReport) -> list[str]:
    """When parts could not be checked: say so first, with why and what the archive holds there."""
    if report.complete:
        return []
    lines = [f"**{report.unverified_summary()}.**", ""]
    lines += [f"- reason: {' '.join(why.split())}" for why in report.unverified_reasons()[:5]]  # one line each
    return [*lines, ""]


def backfill_markdown(report: ReconcileReport) -> list[str]:
    """The backfill section: per stream what was sent and what the SIEM acknowledged."""
    b = report.backfill
    if b is None:
        return []
    if b.get("dry_run"):
        lines = ["", f"## Backfill preview (dry run, nothing sent) to {md_text(b['target'])}", "",
                 "| stream | missing | acknowledged earlier | would send | batches | bytes | in doubt |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for s in report.streams:
            if s.backfill and s.missing_in_siem:
                x = s.backfill
                lines.append(f"| {s.stream} | {x['missing']} | {x['already_acknowledged']} | {x['would_send']} "
                             f"| {x['would_send_batches']} | {x['would_send_bytes']} | {x['in_doubt']} |")
        return lines
    lines = ["", f"## Backfill to {md_text(b['target'])}", "",
             f"Sent {b['sent']}, acknowledged {b['acknowledged']}, already present {b['already_present']}, "
             f"failed {b['failed']}, in doubt {b['in_doubt']}; {b['remaining']} still missing.", "",
             "| stream | destination | missing | acknowledged earlier | sent | acknowledged | already present "
             "| failed | in doubt | remaining |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report.streams:
        if s.backfill and s.missing_in_siem:
            x = s.backfill
            lines.append(f"| {s.stream} | {md_code(x['destination'], table=True)} | {x['missing']} "
                         f"| {x['already_acknowledged']} "
                         f"| {x['sent']} | {x['acknowledged']} | {x['already_present']} | {x['failed']} "
                         f"| {x['in_doubt']} | {x['remaining']} |")
    for s in report.streams:
        x = s.backfill or {}
        if x.get("error"):
            lines.append(f"- {s.stream}: {md_text(x['error'])}")
        reasons: dict[str, list[str]] = {}
        for rid, why in (x.get("failed_ids") or {}).items():
            reasons.setdefault(why, []).append(rid)
        for why, ids in reasons.items():
            lines.append(f"- {s.stream}: {len(ids)} failed (e.g. {md_code(ids[0])}): {md_text(why)}")
        if x.get("in_doubt"):
            lines.append(f"- {s.stream}: {x['in_doubt']} in doubt (sent, not confirmed); the next run asks the SIEM "
                         "before sending them again")
    if b.get("error"):
        lines.append(f"- backfill stopped: {md_text(b['error'])}")
    return lines
