"""What a person at a terminal sees, run under a real pseudo-terminal: tables, the gaps, where the
report went and what to do next; JSON only when asked (or when piped, as scripts always got)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backfill.helpers import Env, backfill_env
from tests.terminal import on_tty, piped

WINDOW = ("--since", "32h", "--include-unsettled")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with backfill_env(tmp_path_factory.mktemp("terminal"), "sentinel") as e:
        yield e


def _reconcile(env: Env, *args: str) -> list[str]:
    return ["reconcile", "--config", str(env.config), *WINDOW, *args]


def test_reconcile_on_a_terminal_prints_a_summary_not_json(env: Env) -> None:
    r = on_tty(_reconcile(env))
    assert r.returncode == 3, r.out[-3000:]
    assert not r.out.lstrip().startswith("{") and '"missing_in_siem"' not in r.out
    assert "missing in SIEM" in r.out and "graph.signins.interactive" in r.out
    assert "Result: GAPS FOUND." in r.out
    assert "What to do next:" in r.out and "--backfill --dry-run" in r.out
    assert "this query must return no rows" in r.out and "Gap intervals are whole 1h buckets" in r.out
    lost = sorted(env.lost())
    assert lost[0] in r.out, "the query names the missing ids"


def test_reconcile_piped_is_json_as_before_with_next_steps(env: Env) -> None:
    r = piped(_reconcile(env))
    assert r.returncode == 3
    doc = json.loads(r.out)
    assert {i for s in doc["streams"] for i in s["missing_in_siem"]} == env.lost()
    assert any("--backfill" in step for step in doc["next_steps"])


def test_reconcile_with_out_says_where_the_report_went(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    r = on_tty(_reconcile(env, "--format", "html", "--out", str(out)))
    assert r.returncode == 3
    assert out.read_text().lstrip().lower().startswith("<!doctype html")
    assert f"Report (html) written to {out}" in r.out and "Result: GAPS FOUND." in r.out


def test_reconcile_format_json_on_a_terminal_and_quiet(env: Env) -> None:
    r = on_tty(_reconcile(env, "--format", "json"))
    assert r.returncode == 3
    start = r.out.index("{")
    assert json.loads(r.out[start:])["has_gaps"] is True
    q = on_tty(_reconcile(env, "--quiet"))
    assert q.returncode == 3 and "GAPS" not in q.out and "{" not in q.out


def test_dry_run_on_a_terminal_shows_the_preview_table(env: Env) -> None:
    r = on_tty(_reconcile(env, "--backfill", "--dry-run"))
    assert "Backfill preview (dry run, nothing sent)" in r.out and "would send" in r.out
    assert "Send it:" in r.out and '"would_send"' not in r.out


def test_collect_once_on_a_terminal_prints_a_table(env: Env) -> None:
    r = on_tty(["collect", "--once", "--config", str(env.config)])
    assert r.returncode == 0, r.out[-3000:]
    assert "stream(s)" in r.out and "all ok" in r.out and "stored" in r.out
    assert '{"tenant"' not in r.out
    p = piped(["collect", "--once", "--config", str(env.config)])
    lines = [json.loads(x) for x in p.err.splitlines() if x.startswith('{"tenant"')]
    assert lines and all(x["ok"] for x in lines), "scripts still read JSON lines on stderr"
    j = on_tty(["collect", "--once", "--format", "json", "--config", str(env.config)])
    assert '{"tenant"' in j.out


def _named(env: Env, tmp_path: Path, service: str = "") -> Path:
    """The env's config with a tenant name (and a [service] table), beside the original."""
    text = env.config.read_text().replace("[[tenants]]\n", '[[tenants]]\nname = "contoso"\n', 1)
    text = text.replace("[siem]\n", f"[service]\n{service}\n[siem]\n", 1) if service else text
    cfg = env.config.parent / f"named-{tmp_path.name}.toml"
    cfg.write_text(text)
    return cfg


def test_status_shows_last_success_gaps_and_the_siem_state_by_label(env: Env, tmp_path: Path) -> None:
    cfg = _named(env, tmp_path)
    assert on_tty(["reconcile", "--config", str(cfg), *WINDOW, "--quiet"]).returncode == 3
    r = on_tty(["status", "--config", str(cfg)])
    print(r.out)
    assert r.returncode == 0, r.out
    head = r.out.splitlines()[0]
    for column in ("state", "last success", "gaps", "SIEM", "last error"):
        assert column in head
    assert "contoso" in r.out and "SIEM gap" in r.out and ("s ago" in r.out or "m ago" in r.out)
    assert f"tenant contoso = {env.emu.info['tenant_id']}" in r.out, "the GUID stays available"
    lost = len(env.lost())
    shown = sum(int(part.split(" missing")[0].split()[-1]) for part in r.out.splitlines() if " missing (" in part)
    assert shown == lost
    doc = json.loads(piped(["status", "--json", "--config", str(cfg)]).out)
    assert {d["tenant"] for d in doc} == {"contoso"} and {d["tenant_id"] for d in doc} == {env.emu.info["tenant_id"]}
    assert all(d["siem"]["state"] == "gap" and "SIEM gap" in d["state"] for d in doc)


def test_status_names_a_stalled_stream_and_exits_1(env: Env, tmp_path: Path) -> None:
    cfg = _named(env, tmp_path, service='stall_threshold = "1s"')
    time.sleep(1.5)
    r = on_tty(["status", "--config", str(cfg)])
    assert r.returncode == 1 and "stalled" in r.out


def test_next_step_query_lists_exactly_what_the_siem_lacks(env: Env) -> None:
    """The KQL the report gives, run as the user would against the (emulated) workspace: no rows for
    the missing ids; the same query with a present id returns it."""
    doc = json.loads(piped(_reconcile(env)).out)
    steps = doc["next_steps"]
    i = next(n for n, s in enumerate(steps) if s.startswith("graph.signins.interactive: in Log Analytics workspace"))
    kql = steps[i + 1].strip()
    info = env.emu.info
    s = env.emu.session()
    token = s.post(f"{info['login']}/{info['tenant_id']}/oauth2/v2.0/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": info["client_id"], "client_secret": info["client_secret"],
        "scope": "https://api.loganalytics.io/.default"}).json()["access_token"]

    def rows(query: str) -> list[list[object]]:
        resp = s.post(f"{info['loganalytics']}/v1/workspaces/{info['workspace_id']}/query", timeout=60,
                      json={"query": query}, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text[:500]
        return list(resp.json()["tables"][0]["rows"])

    assert rows(kql) == []
    stream = next(x for x in doc["streams"] if x["stream"] == "graph.signins.interactive")
    missing = sorted(stream["missing_in_siem"])[0]
    # the query spans the report's gap buckets (first start to last end): any record the SIEM holds in
    # that span must come back (the first bucket alone may have lost all of its records)
    start, end = min(g["start"] for g in stream["gaps"]), max(g["end"] for g in stream["gaps"])
    present = next(r["id"] for r in env.emu.truth() if r["stream"] == "graph.signins.interactive" and r["in_siem"]
                   and start <= r["event_time"] < end)
    assert rows(kql.replace(missing, present)) == [[present]]
    assert any("Gap intervals are whole 1h buckets" in s for s in steps)


def test_markdown_and_html_reports_end_with_what_to_do_next(env: Env, tmp_path: Path) -> None:
    for fmt in ("md", "html"):
        out = tmp_path / f"r.{fmt}"
        piped(_reconcile(env, "--format", fmt, "--out", str(out)))
        text = out.read_text()
        assert "What to do next" in text and "--backfill --dry-run" in text
