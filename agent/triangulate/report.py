"""The triangulation report as Markdown or HTML (JSON is `Report.to_json`; the text a terminal shows is
drawn by `agent.cli.render.triangulate_text`).

Every format says what was judged and what was not: unsettled hours are listed as such, so a quiet
report never hides an hour that simply could not be checked yet.
"""

from __future__ import annotations

import html

from agent.triangulate.engine import PairResult, Report


def kind(p: PairResult) -> str:
    """The b side's RecordType, or "count witness" for Entra's summarized counts (agent/triangulate/witness.py)."""
    return f"RecordType {p.spec.record_type}" if p.spec.record_type else "count witness"


def gap_line(p: PairResult, g: dict[str, object]) -> str:
    lacking = p.spec.a if g["side"] == "a" else p.spec.b
    other = p.spec.b if g["side"] == "a" else p.spec.a
    return f"{lacking} lacks {g['missing']} record(s) that {other} has, {g['start']} to {g['end']}"


def to_markdown(report: Report) -> str:
    w = report.as_dict()["window"]
    out = [f"# Triangulation {w['since']} to {w['until']}", ""]
    for p in report.pairs:
        out += [f"## {p.spec.a} ↔ {p.spec.b} ({kind(p)}) · tenant {p.tenant}", "",
                f"Mapping: {p.spec.mapping} (confidence {p.spec.confidence}). {p.spec.evidence}.", ""]
        gaps = p.gaps()
        out += [f"- **gap**: {gap_line(p, g)}" for g in gaps] or ["No pipeline lacks what its sibling has."]
        out += ["", "| hour | a | b | expected b | verdict |", "|---|---|---|---|---|"]
        for b in p.buckets:
            d = b.as_dict()
            out.append(f"| {d['start']} | {d['a']} | {d['b']} | {d['expected_b']} | {d['verdict']} |")
        for label, ids in (("missing in a", p.missing_in_a), ("missing in b", p.missing_in_b)):
            if ids:
                out += ["", f"{label}: " + ", ".join(f"`{i}`" for i in ids)]
        out.append("")
    return "\n".join(out)


def _chart(p: PairResult) -> str:
    """Per-hour bars of both sides (a dark, b light), lacking hours marked red, unsettled grey."""
    if not p.buckets:
        return ""
    top = max(max(b.a, b.b) for b in p.buckets) or 1
    w, h = 8, 80
    parts = []
    for i, b in enumerate(p.buckets):
        x = i * w
        if b.verdict.startswith("missing"):
            parts.append(f'<rect x="{x}" y="0" width="{w}" height="{h}" fill="#fdd"/>')
        elif b.verdict in ("unsettled", "not_collected"):
            parts.append(f'<rect x="{x}" y="0" width="{w}" height="{h}" fill="#eee"/>')
        for dx, n, color in ((1, b.a, "#235"), (4, b.b, "#69c")):
            bh = round(h * n / top)
            parts.append(f'<rect x="{x + dx}" y="{h - bh}" width="3" height="{bh}" fill="{color}">'
                         f"<title>{html.escape(b.as_dict()['start'])}: {n}</title></rect>")
    return (f'<svg width="{w * len(p.buckets)}" height="{h}" role="img" '
            f'aria-label="records per hour, a and b">{"".join(parts)}</svg>')


def to_html(report: Report) -> str:
    """A self-contained page: one table per pair, lacking hours highlighted."""
    e = html.escape
    w = report.as_dict()["window"]
    body = [f"<h1>Triangulation {e(w['since'])} to {e(w['until'])}</h1>"]
    for p in report.pairs:
        body.append(f"<h2>{e(p.spec.a)} &harr; {e(p.spec.b)} ({kind(p)}), "
                    f"tenant {e(p.tenant)}</h2><p>{e(p.spec.mapping)}-level mapping, confidence "
                    f"{e(p.spec.confidence)}. {e(p.spec.evidence)}.</p>")
        body += [f"<p class=gap>{e(gap_line(p, g))}</p>" for g in p.gaps()]
        body.append(f"<p>Records per hour: {e(p.spec.a)} (dark) and {e(p.spec.b)} (light); red: a side lacks "
                    f"records, grey: not judged yet.</p>{_chart(p)}")
        rows = "".join(
            f"<tr class={e(b.verdict)}><td>{e(d['start'])}</td><td>{d['a']}</td><td>{d['b']}</td>"
            f"<td>{d['expected_b']}</td><td>{e(b.verdict)}</td></tr>"
            for b in p.buckets for d in [b.as_dict()]
        )
        body.append(f"<table><tr><th>hour</th><th>a</th><th>b</th><th>expected b</th><th>verdict</th></tr>"
                    f"{rows}</table>")
        for label, ids in (("missing in a", p.missing_in_a), ("missing in b", p.missing_in_b)):
            if ids:
                body.append(f"<p>{label}: {e(', '.join(ids))}</p>")
    style = ("body{font-family:sans-serif}td,th{padding:2px 8px}.gap{color:#a00}"
             ".missing_in_a,.missing_in_b,.missing_in_both{background:#fdd}.unsettled{color:#888}")
    return f"<!doctype html><meta charset=utf-8><title>Triangulation</title><style>{style}</style>" \
           + "".join(body) + "\n"
