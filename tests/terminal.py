"""Run a command the way a person at a terminal does: stdout and stderr on a pseudo-terminal (so the
program's own isatty() is true), nothing mocked. `piped` runs the same command into pipes."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    returncode: int
    out: str  # a terminal merges stdout and stderr
    err: str = ""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", "TERM": "xterm"}


def on_tty(args: Sequence[str], timeout: float = 180) -> Result:
    """`python -m agent ARGS` with stdout and stderr on a new pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=_env(), cwd=REPO, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise TimeoutError(f"no output for {timeout} s: {b''.join(chunks)[-2000:]!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every slave end closed, the child is done
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    rc = proc.wait(timeout=timeout)
    return Result(rc, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n"))


def piped(args: Sequence[str], timeout: float = 180) -> Result:
    proc = subprocess.run([sys.executable, "-m", "agent", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          env=_env(), cwd=REPO, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
