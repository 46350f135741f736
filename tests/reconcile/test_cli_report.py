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


def _png_rows(path: Path, limit: int) -> list[bytes]:
    """The first `limit` rows of an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes), unfiltered."""
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat, width, channels = 8, b"", 0, 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, _, depth, color = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + size
    raw, stride = zlib.decompressobj().decompress(idat, (width * channels + 1) * limit), width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(min(limit, len(raw) // (stride + 1))):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[j] for j in range(stride) if j % channels < 3))
        prev = line
    return rows


@pytest.mark.skipif(_chromium() is None, reason="needs chromium (.ci/run installs it)")
async def test_could_not_verify_headline_is_amber_in_headless_chromium(tmp_path: Path) -> None:
    """A workspace the agent cannot read: the page leads with an amber "Could not verify", the reason
    and the archive's real count, never the green "No gaps"."""
    from tests.siem.fixtures import WORKSPACE

    scn = mixed_scenario()
    archive = await scn.archive(tmp_path / "store")
    async with running("sentinel", scn.copy(), tmp_path) as r:
        r.siem.url = r.siem.url.replace(WORKSPACE, "0badc0de-0000-4000-8000-000000000000")  # type: ignore[attr-defined]
        report = await reconcile(None, archive, r.siem, [(TENANT, s) for s in scn.entries], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW, siem_name="sentinel")
    assert report.verdict == "unverified"
    held = sum(s.agent_count for s in report.streams)
    assert held > 1000  # the archive's real count, not 0
    page = tmp_path / "report.html"
    page.write_text(to_html(report), encoding="utf-8")
    chromium = _chromium()
    assert chromium is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, timeout=120,
                         check=False)
    assert dom.returncode == 0
    html = dom.stdout.decode()
    assert '<div class="verdict warn" id="verdict"><p class="warn">Could not verify' in html
    assert f"Could not verify 6 of 6 stream(s): the archive holds {held} record(s) there" in html
    assert "WorkspaceNotFound" in html
    assert "No gaps" not in html
    shot = tmp_path / "report.png"
    proc = subprocess.run([chromium, *flags, "--window-size=1000,400", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    pixels = [row[i:i + 3] for row in _png_rows(shot, 300) for i in range(0, len(row), 3)]
    amber_box = sum(1 for p in pixels if p == b"\xff\xfa\xeb")  # #fffaeb behind the headline
    green = sum(1 for p in pixels if p == b"\x06\x76\x47")  # #067647, the "ok" colour
    assert amber_box > 5_000 and green == 0, (amber_box, green)
