"""`agent reconcile` end to end against an emulated SIEM, and the HTML report in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from agent.reconcile import Options, reconcile, to_html, to_markdown
from tests.siem.fixtures import TENANT
from tests.siem.harness import ELASTIC_KEY, running
from tests.siem.test_reconcile_emulated import END, NOW, START, mixed_scenario

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, url: str) -> Path:
    (tmp / "client_secret").write_text("not-used-by-reconcile")
    path = tmp / "agent.toml"
    path.write_text(f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-4333-8444-555555555555"
client_secret_file = "client_secret"
streams = ["graph.signins.interactive", "graph.directory_audits", "o365.exchange"]

[store]
type = "local"
path = "store"

[http]
ca_file = "ca.pem"

[siem]
type = "elastic"
url = "{url}"
api_key_env = "TEST_ELASTIC_KEY"
settle = "1h"
""")
    return path


async def _agent(*args: str) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEST_ELASTIC_KEY": ELASTIC_KEY}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agent", *args, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err


async def test_reconcile_command_exits_3_with_the_contract_report(tmp_path: Path) -> None:
    scn = mixed_scenario()
    copy = scn.copy()
    await scn.archive(tmp_path / "store")
    async with running("elastic", copy, tmp_path) as r:
        cfg = _config(tmp_path, r.url)
        window = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-02T00:00:00Z", "--no-recollect"]
        code, out, err = await _agent("reconcile", "--config", str(cfg), *window, "--format", "json")
        assert code == 3, err.decode()
        doc = orjson.loads(out)
        assert doc["window"] == {"since": "2026-03-01T00:00:00Z", "until": "2026-03-02T00:00:00Z"}
        by = {s["stream"]: s for s in doc["streams"]}
        assert set(by) == {"graph.signins.interactive", "graph.directory_audits", "o365.exchange"}
        for name, s in by.items():
            exp = scn.expected(name, copy)
            assert set(s["missing_in_siem"]) == exp["missing_in_siem"]
            assert set(s["missing_in_agent"]) == exp["missing_in_agent"]
            assert {"agent_count", "siem_count", "duplicates_in_siem", "gaps"} <= set(s)
            assert all(set(g) == {"start", "end", "missing"} for g in s["gaps"])
        code, _, err = await _agent("reconcile", "--config", str(cfg), *window, "--stream", "o365.sharepoint")
        assert code == 2 and b"o365.sharepoint" in err
        code, _, _ = await _agent("reconcile", "--config", str(cfg), *window, "--format", "html",
                                  "--out", str(tmp_path / "r.html"))
        assert code == 3 and (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")


async def test_a_clean_window_exits_0(tmp_path: Path) -> None:
    from tests.siem.fixtures import Scenario

    scn = Scenario(START, END, {"graph.signins.interactive": 100}).generate()
    await scn.archive(tmp_path / "store")
    async with running("elastic", scn.copy(), tmp_path) as r:
        code, out, err = await _agent("reconcile", "--config", str(_config(tmp_path, r.url)),
                                      "--since", "2026-03-01T00:00:00Z", "--until", "2026-03-02T00:00:00Z",
                                      "--stream", "graph.signins.interactive", "--format", "md")
    assert code == 0, err.decode()
    assert b"no gaps" in out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="needs chromium (.ci/run installs it)")
async def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    scn = mixed_scenario()
    archive = await scn.archive(tmp_path / "store")
    async with running("sentinel", scn.copy(), tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, s) for s in scn.entries], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW, siem_name="sentinel")
    page = tmp_path / "report.html"
    page.write_text(to_html(report), encoding="utf-8")
    assert "http://" not in to_html(report).replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "| graph.signins.interactive |" in to_markdown(report)
    chromium = _chromium()
    assert chromium is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium, *flags, "--window-size=1200,3000", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert shot.stat().st_size > 10_000
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=120,
                         check=False)
    assert dom.returncode == 0
    html = dom.stdout.decode()
    for stream in scn.entries:
        assert f'<section class="stream" id="{TENANT}-{stream}"' in html
        assert f'<svg xmlns="http://www.w3.org/2000/svg" class="coverage" data-stream="{stream}"' in html
    assert html.count('class="gap"') >= sum(len(s.gaps) for s in report.streams) > 0
    console_errors = [ln for ln in proc.stderr.decode().splitlines() if "CONSOLE" in ln and "rror" in ln]
    assert not console_errors
    csp_errors = [ln for ln in dom.stderr.decode().splitlines() if "Content Security Policy" in ln]
    assert not csp_errors
