"""docs/first-run.md, executed: its scenario, its emulator command and every command after it, as
written (`agent` run as `python -m agent`), each with the exit code the page states (0 unless it
says `# exit N`). Only the install block is not run (it installs from a checkout)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tests.emulator_fixture import REPO

PAGE = REPO / "docs" / "first-run.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", PAGE.read_text(), re.S)


def _argv(line: str) -> list[str]:
    words = shlex.split(line.split("#", 1)[0])
    assert words[0] == "agent", line
    return [sys.executable, "-m", "agent", *words[1:]]


def test_first_run_page_works_as_written(tmp_path: Path) -> None:
    (tmp_path / "scenario.toml").write_text(_blocks("toml")[0])
    sh = _blocks("sh")
    assert "pip install" in sh[0], "the first block is the install, not run here"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    emulator_line = sh[1].strip()
    emu = subprocess.Popen(_argv(emulator_line), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        assert emu.stdout is not None
        json.loads(emu.stdout.readline())  # the emulator's first line: ready
        deadline = time.monotonic() + 30
        while not (tmp_path / "agent.toml").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for block in sh[2:]:
            for line in filter(None, (ln.strip() for ln in block.splitlines())):
                want = int(m.group(1)) if (m := re.search(r"# exit (\d)", line)) else 0
                proc = subprocess.run(_argv(line), cwd=tmp_path, env=env, capture_output=True, text=True,
                                      timeout=300, check=False)
                assert proc.returncode == want, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
                assert "Traceback" not in proc.stderr, line
    finally:
        emu.terminate()
        emu.wait(timeout=30)
        for pipe in (emu.stdout, emu.stderr):  # unclosed, they are a ResourceWarning (an error here)
            if pipe is not None:
                pipe.close()
    assert (tmp_path / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    after = json.loads((tmp_path / "after.json").read_text())
    assert not after["has_gaps"] and after["complete"]
    status = subprocess.run([sys.executable, "-m", "agent", "status", "--json", "--config", "agent.toml"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert {row["siem"]["state"] for row in json.loads(status.stdout)} == {"ok"}
