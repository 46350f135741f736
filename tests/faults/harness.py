"""Run the real `agent` CLI as a subprocess against the emulator, for the fault matrix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def outcomes(self) -> list[dict[str, Any]]:
        """The per-stream JSON lines `agent collect --once` prints on stderr."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith('{"tenant"'):
                out.append(json.loads(line))
        return out


def agent(*args: str, timeout: float = 120) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "MSAL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def tune(config: Path, **collection: Any) -> None:
    """Add keys to the `[collection]` table of a config written by `--write-config`."""
    text = config.read_text()
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in collection.items())
    config.write_text(text.replace("[collection]\n", "[collection]\n" + extra, 1))


def exported_ids(config: Path, stream: str, id_field: str) -> set[str]:
    run = agent("export", "-c", str(config), "--stream", stream)
    assert run.code == 0, run.stderr
    return {json.loads(line)[id_field] for line in run.stdout.splitlines() if line}


def status(config: Path) -> list[dict[str, Any]]:
    run = agent("status", "--json", "-c", str(config))
    rows: list[dict[str, Any]] = json.loads(run.stdout)
    return rows
