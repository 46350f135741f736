"""Helpers for the end-to-end proofs: run the agent CLI as a subprocess, compare its export with truth.

The agent always runs as `python -m agent` with PYTHONPATH set to this checkout, so the code under
test is the worktree's. Its whole output (stdout + stderr, JSON logs) is kept so tests can assert
that no secret ever reaches it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
GRAPH_STREAMS = ("graph.signins.interactive", "graph.signins.noninteractive", "graph.signins.serviceprincipal",
                 "graph.signins.managedidentity", "graph.directory_audits", "graph.provisioning")
O365_STREAMS = ("o365.azure_active_directory", "o365.exchange", "o365.sharepoint", "o365.general", "o365.dlp_all")
ID_FIELD = {s: "id" for s in GRAPH_STREAMS} | {s: "Id" for s in O365_STREAMS}


def agent_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "MSAL_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


@dataclass
class Transcript:
    """Every byte the agent printed across all runs of a test."""

    chunks: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.chunks.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.chunks)


def run_agent(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600,
              transcript: Transcript | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=agent_env(env), cwd=REPO, timeout=timeout, check=False)
    if transcript is not None:
        transcript.add(proc.stdout)
        transcript.add(proc.stderr)
    return proc


def start_agent(args: Sequence[str], *, env: Mapping[str, str] | None = None,
                log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "agent", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=agent_env(env), cwd=REPO, start_new_session=True)
    finally:
        out.close()


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the collector (and nothing else): a crash, not a shutdown."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def crash_repeatedly(config: Path, log: Path, rng: random.Random, kills: int = 10) -> None:
    """SIGKILL `collect --once` at random moments `kills` times; a run that finishes first must succeed.

    The moments are drawn from 0.8-3.5 s, narrowed to within the shortest run seen: on a fast machine
    a pass (a later one has less to do) can end in under 3.5 s, and fixed bounds then let most runs
    finish before their kill until the test gave up."""
    done = runs = 0
    lo, hi = 0.8, 3.5
    while done < kills:
        runs += 1
        assert runs < 4 * kills, "the collector kept finishing before it could be killed"
        started = time.monotonic()
        proc = start_agent(["collect", "--once", "--config", str(config)], log=log)
        at = started + rng.uniform(lo, hi)
        while proc.poll() is None and time.monotonic() < at:
            time.sleep(0.02)
        if proc.poll() is None:
            kill(proc)
            done += 1
        else:
            assert proc.returncode == 0, log.read_text()[-3000:]
            took = time.monotonic() - started
            hi = min(hi, 0.9 * took)
            lo = min(lo, hi / 2)


def edit_config(path: Path, table: str, **values: Any) -> None:
    """Add keys right after an existing `[table]` header (or append the table)."""
    lines = [f"{k} = {_toml(v)}" for k, v in values.items()]
    text = path.read_text()
    header = f"[{table}]\n"
    if header in text:
        text = text.replace(header, header + "\n".join(lines) + "\n", 1)
    else:
        text += f"\n{header}" + "\n".join(lines) + "\n"
    path.write_text(text)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return orjson.dumps(str(v)).decode()


def export(config: Path, *, env: Mapping[str, str] | None = None,
           transcript: Transcript | None = None) -> list[dict[str, Any]]:
    proc = run_agent(["export", "--config", str(config)], env=env, transcript=None)
    if transcript is not None:
        transcript.add(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return [orjson.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def exported_ids(config: Path, streams: Iterable[str], **kw: Any) -> dict[str, list[str]]:
    """Ids per stream, in export order (duplicates kept, so a test can see them)."""
    out: dict[str, list[str]] = {}
    for s in streams:
        proc = run_agent(["export", "--config", str(config), "--stream", s], env=kw.get("env"))
        assert proc.returncode == 0, proc.stderr
        out[s] = [orjson.loads(line)[ID_FIELD[s]] for line in proc.stdout.splitlines() if line.strip()]
    return out


def parse_rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def expected_ids(truth: Iterable[Mapping[str, Any]], at: datetime,
                 streams: Iterable[str]) -> dict[str, set[str]]:
    """What collection at `at` must hold: visible by then and available (never-fetchable blobs excluded)."""
    wanted = set(streams)
    out: dict[str, set[str]] = defaultdict(set)
    for t in truth:
        if t.get("upstream_lost"):  # no API ever serves it
            continue
        if t["stream"] in wanted and parse_rfc3339(t["visible_at"]) <= at and t.get("available", True) is not False:
            out[t["stream"]].add(t["id"])
    return {s: out.get(s, set()) for s in wanted}


def compare(got: Mapping[str, list[str]], want: Mapping[str, set[str]]) -> dict[str, dict[str, Any]]:
    """Per stream: missing, duplicate and extra ids (all empty when the archive equals the truth)."""
    report = {}
    for s, ids in want.items():
        have = got.get(s, [])
        dups = sorted(i for i, n in Counter(have).items() if n > 1)
        report[s] = {"missing": sorted(ids - set(have)), "duplicates": dups, "extra": sorted(set(have) - ids),
                     "want": len(ids), "got": len(have)}
    return report


def assert_exact(got: Mapping[str, list[str]], want: Mapping[str, set[str]]) -> None:
    report = compare(got, want)
    bad = {s: {k: (v[:5] if isinstance(v, list) else v) for k, v in r.items()}
           for s, r in report.items() if r["missing"] or r["duplicates"] or r["extra"]}
    assert not bad, f"archive differs from the truth: {bad}"
    assert all(r["want"] > 0 for r in report.values()), f"a stream has no records at all: {report}"


def outcomes(stderr: str) -> list[dict[str, Any]]:
    """The per-stream JSON outcomes `collect --once` prints on stderr."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("{") and '"windows"' in line:
            doc = orjson.loads(line)
            if "ok" in doc and "msg" not in doc:
                out.append(doc)
    return out


def assert_no_secrets(text: str, secrets: Iterable[str]) -> None:
    for s in secrets:
        if s and len(s) >= 8:
            assert s not in text, f"a secret ({s[:4]}…) appears in the agent's output"


def pem_body(pem: str) -> str:
    """The base64 lines of a PEM block, joined (what a leak would show)."""
    lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    return "".join(lines)


def tokens_issued(emu_state_dir: Path) -> list[str]:
    """Not available from the emulator; tests fetch a token themselves and check its shape is absent."""
    return []


JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")


def wait_until(deadline: float) -> None:
    left = deadline - time.time()
    if left > 0:
        time.sleep(left)
