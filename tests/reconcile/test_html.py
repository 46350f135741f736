"""Unit tests of the report page (agent/reconcile/html.py), read back with a real HTML parser.

The page is opened by analysts from an air-gapped workstation, so what is asserted is its
structure as a browser would build it: one section and one chart per stream, the verdict that
matches the report, nothing fetched, and every value that came from a SIEM, a record or a config
(an id such as `<script>...`, a tenant label, an error text) arriving as text, never as markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from agent.reconcile.diff import US, Gap
from agent.reconcile.html import to_html
from agent.reconcile.report import BucketRow, ReconcileReport, StreamReport

H = 3600 * US
T1, T2 = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", "0b6a9f3e-2d1c-4e5f-8a7b-1c2d3e4f5a6b"
SCRIPT_ID = "<script>alert(document.cookie)</script>"
ATTR_BREAK = "\"'><img src=x onerror=alert(1)>"
HOSTILE = [SCRIPT_ID, ATTR_BREAK, "</code></details><iframe src=https://evil.example>", "a&amp;b", "]]><!--"]
# Markup the page writes itself; anything else in the parsed tree was injected.
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "small", "span", "table",
                "thead", "tbody", "tr", "th", "td", "section", "svg", "g", "rect", "text", "line", "ul", "li",
                "details", "summary", "code", "div", "i"}


@dataclass
class Page(HTMLParser):
    """The parsed page: every start tag with its attributes, and every text node."""

    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def text(self) -> str:
        return "".join(self.texts)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def stream(tenant: str = T1, name: str = "graph.signins.interactive", **kw: object) -> StreamReport:
    s = StreamReport(tenant, name, agent_count=4, siem_count=4, siem_answered=True, **kw)  # type: ignore[arg-type]
    s.buckets = [BucketRow(start=0, agent=2, siem=2), BucketRow(start=H, agent=2, siem=2)]
    return s


def report(*streams: StreamReport, **kw: object) -> ReconcileReport:
    return ReconcileReport(since=0, until=2 * H, siem=str(kw.pop("siem", "sentinel")), bucket_us=H,
                           generated_at=2 * H, streams=list(streams), **kw)  # type: ignore[arg-type]


def hostile_report() -> ReconcileReport:
    s = stream(missing_in_siem=set(HOSTILE), missing_in_agent={ATTR_BREAK}, duplicates_in_siem={SCRIPT_ID: 2})
    s.gaps = [Gap(0, H, len(HOSTILE))]
    s.buckets = [BucketRow(start=0, agent=5, siem=0, missing=5), BucketRow(start=H, agent=2, siem=3, holes=1)]
    s.notes = [f"the SIEM said {SCRIPT_ID}"]
    s.unverified = [(H, 2 * H, f"query failed: {ATTR_BREAK}")]
    s.backfill = {"missing": 5, "already_acknowledged": 0, "sent": 5, "acknowledged": 4, "already_present": 0,
                  "failed": 1, "in_doubt": 0, "remaining": 1, "error": f"refused: {SCRIPT_ID}"}
    return report(s, siem=f"splunk {SCRIPT_ID}", skipped=[{"start": "a", "end": "b", "reason": ATTR_BREAK}],
                  backfill={"target": f"splunk{ATTR_BREAK}", "dry_run": False})


def test_hostile_values_arrive_as_text_and_add_no_markup() -> None:
    html = to_html(hostile_report(), labels={T1: f"Contoso {ATTR_BREAK}"})
    page = parse(html)
    assert {t for t, _ in page.tags} <= ALLOWED_TAGS
    assert not page.all("script") and not page.all("img") and not page.all("iframe")
    assert not [a for _, attrs in page.tags for a in attrs if a.startswith("on")]  # no event handlers
    for value in HOSTILE:
        assert value in page.text, value  # shown to the analyst exactly as the SIEM sent it
    assert SCRIPT_ID not in html and ATTR_BREAK not in html  # ... and never raw in the markup


def test_nothing_is_fetched_and_scripts_are_forbidden_by_policy() -> None:
    page = parse(to_html(hostile_report()))
    csp = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
    assert csp and csp[0]["content"] == "default-src 'none'; style-src 'unsafe-inline'"
    for _, attrs in page.tags:
        assert not {"src", "href", "action", "srcset"} & set(attrs), attrs
    assert page.all("meta", charset="utf-8")


def test_one_section_and_one_chart_per_stream() -> None:
    a, b = stream(T1, "graph.signins.interactive"), stream(T2, "o365.exchange")
    page = parse(to_html(report(a, b)))
    sections = page.all("section", **{"class": "stream"})
    assert [s["data-stream"] for s in sections] == ["graph.signins.interactive", "o365.exchange"]
    assert [s["id"] for s in sections] == [f"{T1}-graph.signins.interactive", f"{T2}-o365.exchange"]
    charts = page.all("svg", **{"class": "coverage"})
    assert [c["data-stream"] for c in charts] == ["graph.signins.interactive", "o365.exchange"]
    assert all(c["viewbox"] == "0 0 960 170" for c in charts)  # the parser lowercases names
    rows = page.all("tr")
    assert len(rows) == 1 + 2  # the summary table: header and one row per stream


def test_gaps_are_drawn_and_listed_with_their_ids() -> None:
    s = stream(missing_in_siem={"id-1", "id-2"})
    s.gaps = [Gap(0, H, 2)]
    s.buckets = [BucketRow(start=0, agent=2, siem=0, missing=2), BucketRow(start=H, agent=2, siem=2)]
    page = parse(to_html(report(s)))
    assert page.all("p", id="verdict", **{"class": "verdict bad"})
    assert len(page.all("rect", **{"class": "gap"})) == 1
    assert "1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z: 2 missing in the SIEM" in page.text
    assert "missing in the SIEM: 2" in page.text and "id-1" in page.text and "id-2" in page.text


def test_no_gaps_is_said_only_when_every_bucket_was_compared() -> None:
    page = parse(to_html(report(stream())))
    assert page.all("p", id="verdict", **{"class": "verdict ok"})
    assert "No gaps: the SIEM holds every archived record." in page.text

    unsure = stream()
    unsure.unverified = [(0, 2 * H, "the SIEM did not answer")]
    page = parse(to_html(report(unsure)))
    assert not page.all("p", **{"class": "verdict ok"}) and "No gaps" not in page.text
    assert page.all("div", id="verdict", **{"class": "verdict warn"})
    assert "Could not verify" in page.text and "the SIEM did not answer" in page.text


def test_unverified_buckets_are_grey_and_archive_holes_amber() -> None:
    s = stream()
    s.buckets = [BucketRow(start=0, agent=2, siem=2, unverified=True), BucketRow(start=H, agent=1, siem=2, holes=1)]
    page = parse(to_html(report(s)))
    assert [r["fill"] for r in page.all("rect") if r.get("fill") == "#98a2b3"] == ["#98a2b3"]
    assert len(page.all("rect", **{"class": "hole"})) == 1


def test_long_id_lists_are_cut_and_say_how_many_more() -> None:
    s = stream(missing_in_siem={f"id-{i:04d}" for i in range(250)})
    page = parse(to_html(report(s)))
    assert "missing in the SIEM: 250 (+50 more in the JSON report)" in page.text
    assert len([t for t in page.texts if t.startswith("id-")]) == 200


def test_tenant_labels_show_the_name_with_the_guid_beside() -> None:
    page = parse(to_html(report(stream()), labels={T1: "Contoso"}))
    spans = page.all("span", **{"class": "tenant"})
    assert spans and all(s["title"] == T1 for s in spans)
    assert f"Contoso ({T1})" in page.text
    bare = parse(to_html(report(stream())))
    assert not bare.all("span", **{"class": "tenant"}) and f"({T1})" in bare.text


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_backfill_table_has_one_row_per_stream_sent(dry_run: bool) -> None:
    s = stream(missing_in_siem={"id-1"})
    s.backfill = ({"missing": 1, "already_acknowledged": 0, "would_send": 1, "would_send_batches": 1,
                   "would_send_bytes": 900} if dry_run else
                  {"missing": 1, "already_acknowledged": 0, "sent": 1, "acknowledged": 0, "already_present": 0,
                   "failed": 0, "in_doubt": 1, "remaining": 1})
    quiet = stream(T2, "o365.exchange")
    page = parse(to_html(report(s, quiet, backfill={"target": "splunk", "dry_run": dry_run})))
    assert page.all("section", id="backfill")
    title = "Backfill preview to splunk (dry run: nothing sent)" if dry_run else "Backfill to splunk"
    assert title in page.text
    rows = [t for t in page.tags if t[0] == "tr"]
    assert len(rows) == (1 + 2) + (1 + 1)  # summary table, then the backfill table: only the stream sent
    if not dry_run:
        assert len(page.all("td", **{"class": "bad"})) >= 2  # in doubt and remaining stand out


def test_no_backfill_section_without_a_backfill() -> None:
    assert not parse(to_html(report(stream()))).all("section", id="backfill")
