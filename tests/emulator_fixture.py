"""Run the emulator as a subprocess for tests: `running_emulator(scenario_text, tmp_path)`.

Reusable by any end-to-end test::

    from tests.emulator_fixture import running_emulator

    def test_collect(tmp_path):
        args = ("--write-config", str(tmp_path / "agent.toml"))
        with running_emulator(SCENARIO, tmp_path, extra_args=args) as emu:
            emu.info["graph"]            # every first-line key (contract 6)
            emu.session()                # requests.Session trusting the emulator CA, env ignored
            emu.truth()                  # parsed ground truth (always written to emu.truth_path)

The subprocess is `python -m emulator`, stopped with SIGTERM on exit (killed after 10 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]


@dataclass
class EmulatorInfo:
    """A running emulator: its first stdout line, paths, and helpers."""

    info: dict[str, Any]
    process: subprocess.Popen[bytes]
    state_dir: Path
    truth_path: Path
    fault_log: Path
    stderr_path: Path
    scenario_path: Path
    _truth: list[dict[str, Any]] | None = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.info[key]

    def session(self) -> requests.Session:
        """A requests.Session that trusts only the emulator CA and ignores REQUESTS_CA_BUNDLE etc."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.info["ca_file"]
        return s

    def truth(self) -> list[dict[str, Any]]:
        if self._truth is None:
            self._truth = [json.loads(line) for line in self.truth_path.read_text().splitlines() if line]
        return self._truth

    def faults(self) -> list[dict[str, Any]]:
        if not self.fault_log.exists():
            return []
        return [json.loads(line) for line in self.fault_log.read_text().splitlines() if line]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _read_first_line(proc: subprocess.Popen[bytes], timeout: float, stderr_path: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"emulator did not start (exit {proc.poll()}):\n{stderr_path.read_text()}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk and proc.poll() is not None:
                continue
            buf += chunk
    return dict(json.loads(buf.split(b"\n", 1)[0]))


@contextlib.contextmanager
def running_emulator(
    scenario_text: str, tmp_path: Path, extra_args: Sequence[str] = (), timeout: float = 60.0
) -> Iterator[EmulatorInfo]:
    """Start `python -m emulator` on `scenario_text`, yield once its first line is read, stop it."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(scenario_text)
    state_dir, truth, faults = (
        tmp_path / "emulator-state",
        tmp_path / "truth.ndjson",
        tmp_path / "faults.ndjson",
    )
    stderr_path = tmp_path / "emulator.stderr"
    args = list(extra_args)
    if "--truth" not in args:
        args += ["--truth", str(truth)]
    else:
        truth = Path(args[args.index("--truth") + 1])
    if "--fault-log" not in args:
        args += ["--fault-log", str(faults)]
    else:
        faults = Path(args[args.index("--fault-log") + 1])
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emulator",
                "--scenario",
                str(scenario),
                "--state-dir",
                str(state_dir),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=REPO,
        )
    try:
        info = _read_first_line(proc, timeout, stderr_path)
        yield EmulatorInfo(
            info=info,
            process=proc,
            state_dir=state_dir,
            truth_path=truth,
            fault_log=faults,
            stderr_path=stderr_path,
            scenario_path=scenario,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
