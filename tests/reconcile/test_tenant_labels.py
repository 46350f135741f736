"""Reconcile reports name tenants as `agent status` does: the config's label, with the GUID beside it.

The Markdown and HTML reports are for people; the JSON report is a contract and keeps the GUID only.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from agent.reconcile import ReconcileReport, StreamReport, to_html, to_markdown
from tests.reconcile.test_cli_report import _agent, _config
from tests.siem.fixtures import TENANT, Scenario
from tests.siem.harness import running
from tests.siem.test_reconcile_emulated import END, START

WINDOW = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-02T00:00:00Z",
          "--stream", "graph.signins.interactive", "--no-recollect"]


def _named(path: Path, name: str) -> Path:
    path.write_text(path.read_text().replace(f'id = "{TENANT}"\n', f'id = "{TENANT}"\nname = "{name}"\n', 1))
    return path


async def test_md_and_html_show_the_label_with_the_guid_and_json_is_unchanged(tmp_path: Path) -> None:
    scn = Scenario(START, END, {"graph.signins.interactive": 60}).generate()
    await scn.archive(tmp_path / "store")
    async with running("elastic", scn.copy(), tmp_path) as r:
        cfg = str(_named(_config(tmp_path, r.url), "contoso-eu"))
        code, md, err = await _agent("reconcile", "--config", cfg, *WINDOW, "--format", "md")
        assert code == 0, err.decode()
        code, _, err = await _agent("reconcile", "--config", cfg, *WINDOW, "--out", str(tmp_path / "r.html"))
        assert code == 0, err.decode()
        code, js, err = await _agent("reconcile", "--config", cfg, *WINDOW, "--format", "json")
        assert code == 0, err.decode()
        code, status, err = await _agent("status", "--config", cfg)
    assert f"| contoso-eu ({TENANT}) | graph.signins.interactive |" in md.decode()
    page = (tmp_path / "r.html").read_text()
    assert f'<td><span class="tenant" title="{TENANT}">contoso-eu</span> ({TENANT})</td>' in page
    doc = orjson.loads(js)
    assert [s["tenant"] for s in doc["streams"]] == [TENANT]  # the contract: the GUID, nothing else
    assert b"contoso-eu" not in js
    assert b"contoso-eu" in status  # the same label `agent status` shows


def _report(tenant: str) -> ReconcileReport:
    s = StreamReport(tenant=tenant, stream="graph.directory_audits", agent_count=2, siem_count=1,
                     missing_in_siem={"a"}, missing_in_agent=set(), duplicates_in_siem={})
    return ReconcileReport(since=0, until=3_600_000_000, siem="elastic", bucket_us=3_600_000_000,
                           generated_at=0, streams=[s])


def test_a_label_is_inert_text_and_an_unlabelled_tenant_is_its_guid() -> None:
    report = _report(TENANT)
    hostile = {TENANT: "<b>x</b> | [y](z)"}
    md = to_markdown(report, labels=hostile)
    assert f"| \\<b\\>x\\</b\\> \\| \\[y\\]\\(z\\) ({TENANT}) |" in md
    page = to_html(report, hostile)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt; | [y](z)" in page
    for labels in (None, {}, {TENANT: TENANT}):
        assert f"| {TENANT} | graph.directory_audits |" in to_markdown(report, labels=labels)
        assert f"<td>{TENANT}</td>" in to_html(report, labels)
        assert f"## graph.directory_audits ({TENANT})" in to_markdown(report, labels=labels)
