"""Values the SIEM supplies (ids it holds that the archive lacks, its error texts) cannot change the
structure of the Markdown or HTML report: no injected table rows, headings, links or markup."""

from __future__ import annotations

import re
from html import escape

from agent.reconcile import to_html, to_markdown
from agent.reconcile.report import ReconcileReport, StreamReport, md_code, md_text

H = 3600 * 10**6
HOSTILE = [
    "x\n| injected | row | 1 | 2 | 3 | 4 | 5 |",
    "y\r\n\r\n# Everything is fine",
    "z` [click](https://evil.example) `",
    "<script>alert(1)</script>",
    "a|b",
    "``fenced``",
    "line\u2028separator",
]


def _report() -> ReconcileReport:
    s = StreamReport("6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", "graph.signins.interactive", agent_count=3,
                     siem_count=10, missing_in_agent=set(HOSTILE), duplicates_in_siem={HOSTILE[0]: 2})
    s.unverified = [(0, H, "the SIEM could not answer: 400 {\"error\": \"bad\"}\n| forged | 0 | 0 |")]
    s.notes = ["note with [a link](https://evil.example) and\n## a heading"]
    return ReconcileReport(since=0, until=H, siem="elastic", bucket_us=H, generated_at=H, streams=[s])


def test_markdown_keeps_its_structure_with_hostile_siem_values() -> None:
    md = to_markdown(_report())
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 3, table  # header, separator, the one stream: nothing injected
    assert [ln for ln in lines if ln.startswith("#")] == ["# Reconciliation against elastic",
                                                          "## graph.signins.interactive "
                                                          "(6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10)"]
    prose = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", md)  # code spans are literal text
    assert re.search(r"(?<!\\)\]\(https://evil", prose) is None, prose  # no live link outside them
    assert "<script>" not in prose
    assert "\u2028" not in md and "\r" not in md


def test_md_code_spans_cannot_be_closed_by_the_value() -> None:
    for value in HOSTILE:
        span = md_code(value)
        fence = re.match(r"`+", span)
        assert fence is not None
        inner = span[len(fence.group()):-len(fence.group())]
        assert fence.group() not in inner, span  # the fence is longer than any backtick run inside
        assert "\n" not in span and "\r" not in span
    assert md_code("a|b", table=True) == "`a\\|b`" and md_code("a|b") == "`a|b`"
    assert md_text("[x](y) *z* <b>") == "\\[x\\]\\(y\\) \\*z\\* \\<b\\>"
    assert md_text("a\nb") == "a\\\\u000ab"


def test_html_escapes_every_siem_value() -> None:
    page = to_html(_report())
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'href="https://evil.example"' not in page
    assert escape(_report().streams[0].unverified[0][2]) in page  # the SIEM's text, shown, inert
    assert page.count("<section") == 1 and page.count("<table") == 1
