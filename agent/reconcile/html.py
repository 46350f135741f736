"""The reconcile report as one self-contained HTML page with an inline SVG coverage chart per stream.

No scripts, fonts, stylesheets or images are fetched: the page must open on an air-gapped analyst
workstation and in CI's headless Chromium. Every text value is escaped; ids never reach markup
except inside escaped lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from agent.reconcile.diff import US
from agent.reconcile.report import ReconcileReport, StreamReport, iso, tenant_shown

_W, _H, _LEFT, _BOTTOM, _TOP = 960, 170, 56, 28, 12
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2430;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #d5dae1;padding:4px 10px;text-align:right}
td:first-child,td:nth-child(2),th{text-align:left}.bad{color:#b42318;font-weight:600}.ok{color:#067647}
.warn{color:#b54708;font-weight:600}.verdict.warn{background:#fffaeb;border:1px solid #fec84b;padding:8px 12px}
.legend span{display:inline-block;margin-right:18px}.sw{display:inline-block;width:12px;height:12px;
vertical-align:-1px;margin-right:5px}code{font-size:12px}details{margin:6px 0}
svg{max-width:100%;height:auto;border:1px solid #e4e7ec;background:#fcfcfd}
"""


def _bars(s: StreamReport, report: ReconcileReport) -> str:
    n = max(1, len(s.buckets))
    plot_w, plot_h = _W - _LEFT - 10, _H - _BOTTOM - _TOP
    top = max([max(b.agent, b.siem) for b in s.buckets] + [1])
    step = plot_w / n
    parts = []
    for g in s.gaps:  # gap bands first, so bars draw over them
        x = _LEFT + (g.start - report.since) / report.bucket_us * step
        w = (g.end - g.start) / report.bucket_us * step
        parts.append(f'<rect class="gap" x="{x:.1f}" y="{_TOP}" width="{w:.1f}" height="{plot_h}" fill="#fda29b" '
                     f'fill-opacity="0.45"><title>gap {escape(iso(g.start))} to {escape(iso(g.end))}: '
                     f'{g.missing} missing in the SIEM</title></rect>')
    for i, b in enumerate(s.buckets):
        x = _LEFT + i * step
        if b.holes:  # the archive's own holes, in amber
            parts.append(f'<rect class="hole" x="{x:.1f}" y="{_TOP}" width="{step:.1f}" height="{plot_h}" '
                         f'fill="#fec84b" fill-opacity="0.45"><title>{b.holes} record(s) missing in the archive'
                         f'</title></rect>')
        ha, hs = b.agent / top * plot_h, b.siem / top * plot_h
        tip = escape(f"{iso(b.start)}: archive {b.agent}, SIEM {b.siem}, missing {b.missing}")
        fill = "#98a2b3" if b.unverified else "#2e90fa"
        parts.append(f'<g><title>{tip}</title>'
                     f'<rect x="{x + step * 0.08:.1f}" y="{_TOP + plot_h - ha:.1f}" width="{step * 0.4:.1f}" '
                     f'height="{ha:.1f}" fill="{fill}"/>'
                     f'<rect x="{x + step * 0.5:.1f}" y="{_TOP + plot_h - hs:.1f}" width="{step * 0.4:.1f}" '
                     f'height="{hs:.1f}" fill="{"#d92d20" if b.missing else "#12b76a"}"/></g>')
    label_every = max(1, n // 12)
    for i in range(0, n, label_every):
        x = _LEFT + i * step
        text = iso(report.since + i * report.bucket_us)[5:16].replace("T", " ")
        parts.append(f'<text x="{x:.1f}" y="{_H - 8}" font-size="10" fill="#475467">{escape(text)}</text>')
    parts.append(f'<text x="4" y="{_TOP + 10}" font-size="10" fill="#475467">{top}</text>'
                 f'<text x="4" y="{_TOP + plot_h}" font-size="10" fill="#475467">0</text>'
                 f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - 10}" y2="{_TOP + plot_h}" stroke="#98a2b3"/>')
    title = escape(f"{s.stream}: archive vs SIEM per {report.bucket_us // US} s bucket")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="coverage" data-stream="{escape(s.stream)}" '
            f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" aria-label="{title}">'
            f'<title>{title}</title>{"".join(parts)}</svg>')


def _ids(label: str, ids: set[str] | dict[str, int], limit: int = 200) -> str:
    if not ids:
        return ""
    shown = sorted(ids)[:limit]
    more = f" (+{len(ids) - len(shown)} more in the JSON report)" if len(ids) > len(shown) else ""
    items = " ".join(f"<code>{escape(i)}</code>" for i in shown)
    return f"<details><summary>{escape(label)}: {len(ids)}{more}</summary><p>{items}</p></details>"


def _tenant(tenant: str, labels: Mapping[str, str] | None) -> str:
    """The tenant as `agent status` names it: its label (GUID in a tooltip too), then the GUID."""
    label, guid = tenant_shown(tenant, labels)
    if not label:
        return escape(guid)
    return f'<span class="tenant" title="{escape(guid)}">{escape(label)}</span> ({escape(guid)})'


def _tenant_h2(tenant: str, labels: Mapping[str, str] | None) -> str:
    shown = _tenant(tenant, labels)
    return shown if tenant_shown(tenant, labels)[0] else f"({shown})"


def _section(s: StreamReport, report: ReconcileReport, labels: Mapping[str, str] | None = None) -> str:
    if s.has_gaps:
        status = '<span class="bad">gaps</span>'
    elif s.unverified:
        status = '<span class="warn">could not verify</span>'
    else:
        status = '<span class="ok">complete</span>'
    gaps = "".join(f"<li>{escape(iso(g.start))} to {escape(iso(g.end))}: {g.missing} missing in the SIEM</li>"
                   for g in s.gaps)
    unverified = "".join(f"<li>unverified {escape(iso(a))} to {escape(iso(b))}: {escape(why)}</li>"
                         for a, b, why in s.unverified)
    notes = "".join(f"<li>{escape(n)}</li>" for n in s.notes)
    lists = f"<ul>{gaps}{unverified}{notes}</ul>" if gaps or unverified or notes else ""
    return (f'<section class="stream" id="{escape(s.tenant)}-{escape(s.stream)}" data-stream="{escape(s.stream)}">'
            f"<h2>{escape(s.stream)} <small>{_tenant_h2(s.tenant, labels)}</small> — {status}</h2>"
            f"{_bars(s, report)}{lists}"
            f"{_ids('missing in the SIEM', s.missing_in_siem)}{_ids('missing in the archive', s.missing_in_agent)}"
            f"{_ids('duplicated in the SIEM', s.duplicates_in_siem)}</section>")


def _backfill(report: ReconcileReport) -> str:
    """The backfill summary: per stream what was sent and what the SIEM acknowledged."""
    b = report.backfill
    if b is None:
        return ""
    if b.get("dry_run"):
        head = ("<th>stream</th><th>missing</th><th>acknowledged earlier</th><th>would send</th><th>batches</th>"
                "<th>bytes</th>")
        keys: tuple[str, ...] = ("missing", "already_acknowledged", "would_send", "would_send_batches",
                                 "would_send_bytes")
        title = f"Backfill preview to {escape(b['target'])} (dry run: nothing sent)"
    else:
        head = ("<th>stream</th><th>missing</th><th>acknowledged earlier</th><th>sent</th><th>acknowledged</th>"
                "<th>already present</th><th>failed</th><th>in doubt</th><th>remaining</th>")
        keys = ("missing", "already_acknowledged", "sent", "acknowledged", "already_present", "failed", "in_doubt",
                "remaining")
        title = f"Backfill to {escape(b['target'])}"
    rows = "".join(
        f"<tr><td>{escape(s.stream)}</td>" + "".join(
            f'<td class="{"bad" if k in ("failed", "in_doubt", "remaining") and s.backfill.get(k) else ""}">'
            f"{s.backfill.get(k, '')}</td>" for k in keys) + "</tr>"
        for s in report.streams if s.backfill and s.missing_in_siem)
    errors = "".join(f"<li>{escape(s.stream)}: {escape(str(s.backfill['error']))}</li>"
                     for s in report.streams if s.backfill and s.backfill.get("error"))
    return (f'<section id="backfill"><h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
            f"</table>{f'<ul>{errors}</ul>' if errors else ''}</section>")


def _verdict(report: ReconcileReport) -> str:
    """The headline. "No gaps" only when every bucket was compared; otherwise amber, with the reasons
    and what the archive holds in the streams that could not be checked."""
    unverified = ""
    if not report.complete:
        reasons = "".join(f"<li>{escape(why)}</li>" for why in report.unverified_reasons()[:5])
        unverified = (f'<div class="verdict warn" id="verdict-unverified"><p class="warn">'
                      f"{escape(report.unverified_summary())}.</p><ul>{reasons}</ul></div>")
    if report.has_gaps:
        return f'<p class="verdict bad" id="verdict">Gaps found.</p>{unverified}'
    if unverified:
        return unverified.replace('id="verdict-unverified"', 'id="verdict"', 1)
    return '<p class="verdict ok" id="verdict">No gaps: the SIEM holds every archived record.</p>'


def to_html(report: ReconcileReport, labels: Mapping[str, str] | None = None) -> str:
    """The whole page; open it anywhere, it needs nothing else. `labels` (tenant GUID -> the
    config's name) shows tenants as `agent status` does, GUID beside."""
    rows = "".join(
        f"<tr><td>{_tenant(s.tenant, labels)}</td><td>{escape(s.stream)}</td><td>{s.agent_count}</td>"
        f'<td class="{"" if s.verified else "warn"}">{escape(s.siem_cell())}</td>'
        f'<td class="{"bad" if s.missing_in_siem else ""}">{len(s.missing_in_siem)}</td>'
        f'<td class="{"bad" if s.missing_in_agent else ""}">{len(s.missing_in_agent)}</td>'
        f"<td>{len(s.duplicates_in_siem)}</td><td>{len(s.gaps)}</td></tr>" for s in report.streams)
    verdict = _verdict(report)
    skipped = "".join(f"<p>Skipped {escape(x['start'])} to {escape(x['end'])}: {escape(x['reason'])}.</p>"
                      for x in report.skipped)
    legend = ('<p class="legend"><span><i class="sw" style="background:#2e90fa"></i>archive</span>'
              '<span><i class="sw" style="background:#12b76a"></i>SIEM</span>'
              '<span><i class="sw" style="background:#d92d20"></i>SIEM, bucket with missing records</span>'
              '<span><i class="sw" style="background:#fda29b"></i>gap in the SIEM</span>'
              '<span><i class="sw" style="background:#fec84b"></i>hole in the archive</span>'
              '<span><i class="sw" style="background:#98a2b3"></i>unverified</span></p>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
            f"<title>Reconciliation against {escape(report.siem)}</title><style>{_CSS}</style></head><body>"
            f"<h1>Reconciliation against {escape(report.siem)}</h1>"
            f"<p>Window {escape(iso(report.since))} to {escape(iso(report.until))}; generated "
            f"{escape(iso(report.generated_at))}.</p>{verdict}{skipped}"
            f"<table><thead><tr><th>tenant</th><th>stream</th><th>archive</th><th>SIEM rows</th>"
            f"<th>missing in SIEM</th><th>missing in archive</th><th>duplicated</th><th>gaps</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>{_backfill(report)}{legend}"
            f'{"".join(_section(s, report, labels) for s in report.streams)}</body></html>')
