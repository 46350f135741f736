"""What every benchmark script shares: the machine description and the result record.

A benchmark prints its figures next to a baseline measured in the same run, and with
`--result FILE` writes one JSON summary that `tests/bench/run.py` turns into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


@dataclass
class Result:
    id: str  # "P1".."P6"
    title: str
    figure: str  # the headline measurement, with units
    baseline: str  # what it was compared with, measured in the same run
    ratio: float  # figure / baseline in the direction the target states
    target: str
    met: bool
    details: str  # markdown: the full table
    command: str

    def emit(self, path: str | None) -> None:
        doc = {**asdict(self), "machine": machine()}
        print(json.dumps(doc, indent=2))
        if path:
            Path(path).write_text(json.dumps(doc, indent=2))


def command() -> str:
    """How this run was started, relative to the repository root, for docs/benchmarks.md."""
    root = Path(__file__).resolve().parents[2]
    script = Path(sys.argv[0]).resolve()
    rel = script.relative_to(root) if script.is_relative_to(root) else script
    args = sys.argv[1:]
    if "--result" in args:  # where the summary went is not part of how it was measured
        i = args.index("--result")
        args = args[:i] + args[i + 2:]
    return " ".join(["PYTHONPATH=. python", rel.as_posix(), *args])
