"""A collected archive and an emulated SIEM that lost some of it, for the backfill tests.

`backfill_env(tmp_path, siem, plan=..., config=...)` starts the emulator (`--write-config --siem`),
runs `agent collect --once` into a local store, and yields helpers to run `agent reconcile` as a
subprocess and to read what the emulated SIEM ingested (its `/_emulator/ingested` debug view).
The expected ids come from the emulator's ground truth (`in_siem = false`), never from the agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.emulator_fixture import REPO, EmulatorInfo, running_emulator

STREAMS = ("graph.signins.interactive", "graph.directory_audits", "o365.exchange")
SCENARIO = """\
seed = {seed}
start = "-30h"
end = "-3h"
[tenant]
id = "5e7c1d5a-0b8f-4f43-9d6e-6a1d2c3b4a59"
license = "p2"
[streams."graph.signins.interactive"]
records = 300
[streams."graph.directory_audits"]
records = 150
[streams."o365.exchange"]
records = 200
[management]
straggler_fraction = 0.0
[quota]
graph_requests_per_10s = 0
management_requests_per_minute = 0
[siem]
{plan}
[[siem.gaps]]
stream = "*"
start = "-20h"
end = "-17h"
drop_fraction = 1.0
"""
HEC = {"sentinel": "ingestion", "splunk": "splunk_hec", "elastic": "elastic"}


def agent_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


@dataclass
class Env:
    emu: EmulatorInfo
    siem: str
    config: Path
    store: Path
    tmp: Path

    def reconcile(self, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
        out = self.tmp / "report.json"
        out.unlink(missing_ok=True)
        proc = subprocess.run(agent_cmd("reconcile", "--config", str(self.config), "--since", "32h",
                                        "--include-unsettled", "--format", "json", "--out", str(out), *args),
                              env=agent_env(), cwd=REPO, capture_output=True, timeout=timeout)
        assert out.exists(), proc.stderr.decode()[-3000:]
        return proc.returncode, json.loads(out.read_text())

    def start_reconcile(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(agent_cmd("reconcile", "--config", str(self.config), "--since", "32h",
                                          "--include-unsettled", "--format", "json", "--out",
                                          str(self.tmp / "killed.json"), *args),
                                env=agent_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ingested(self) -> dict[str, Any]:
        """The emulated SIEM's own account of what clients wrote into it (duplicates counted)."""
        resp = self.emu.session().get(f"{self.emu.info[HEC[self.siem]]}/_emulator/ingested", timeout=30)
        resp.raise_for_status()
        doc: dict[str, Any] = resp.json()
        return doc

    def ingested_counts(self) -> dict[str, int]:
        """id -> rows written, over every table / sourcetype / index."""
        out: dict[str, int] = {}
        for ids in self.ingested()["places"].values():
            for rid, n in ids.items():
                out[rid] = out.get(rid, 0) + n
        return out

    def lost(self) -> set[str]:
        """Ids the scenario made the SIEM lose (ground truth), for the collected streams."""
        return {r["id"] for r in self.emu.truth() if not r["in_siem"] and r["stream"] in STREAMS}

    def ledger_batches(self) -> list[Path]:
        root = self.store / "_meta" / "backfill"
        return sorted(root.rglob("*.json")) if root.exists() else []


def scenario(plan: dict[str, Any] | None = None, seed: int = 11) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in (plan or {}).items()]
    return SCENARIO.format(seed=seed, plan="\n".join(lines))


@contextlib.contextmanager
def backfill_env(tmp_path: Path, siem: str, plan: dict[str, Any] | None = None,
                 config: dict[str, Any] | None = None, extra_args: Sequence[str] = (), tail: str = "",
                 scenario_text: str | None = None) -> Iterator[Env]:
    cfg, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store), "--siem", siem, *extra_args)
    with running_emulator(scenario_text or scenario(plan), tmp_path / "emu", extra_args=args) as emu:
        text = cfg.read_text().replace("[collection]\n", '[collection]\ninitial_lookback = "40h"\nwindow = "12h"\n'
                                       'management_rescan = "0s"\n', 1)
        for k in config or {}:  # a key given here replaces the one the emulator wrote
            text = "\n".join(ln for ln in text.split("\n") if not ln.startswith(f"{k} = "))
        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (config or {}).items())
        text = text.replace("[siem]\n", "[siem]\n" + extra, 1)
        cfg.write_text(text + "\n" + tail)  # [siem] is the last table: sub-tables may follow
        proc = subprocess.run(agent_cmd("collect", "--once", "--config", str(cfg)), env=agent_env(), cwd=REPO,
                              capture_output=True, timeout=180)
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        yield Env(emu, siem, cfg, store, tmp_path)


def missing(report: dict[str, Any]) -> set[str]:
    return {i for s in report["streams"] for i in s["missing_in_siem"]}


def duplicates(report: dict[str, Any]) -> set[str]:
    return {i for s in report["streams"] for i in s["duplicates_in_siem"]}
