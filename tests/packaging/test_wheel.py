"""The project installs from a wheel it builds: built from this checkout, installed into a new venv,
the `agent` command runs (the way docs/deployment.md tells operators to install it)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_builds_installs_into_a_new_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = dist.glob("ms_log_agent-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("emulator/") for n in names) and not any(n.startswith("tests/") for n in names)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=900, check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    version = subprocess.run([str(venv / "bin" / "agent"), "--version"], capture_output=True, text=True,
                             timeout=60, check=False, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("agent "), version.stderr
    topic = subprocess.run([str(venv / "bin" / "agent"), "help", "streams"], capture_output=True, text=True,
                           timeout=60, check=False, cwd=tmp_path)
    assert topic.returncode == 0 and "graph.signins.interactive" in topic.stdout, topic.stderr
    emulator = subprocess.run([str(venv / "bin" / "agent"), "emulator", "--help"], capture_output=True, text=True,
                              timeout=60, check=False, cwd=tmp_path)
    assert emulator.returncode == 0 and "--scenario" in emulator.stdout, emulator.stderr
