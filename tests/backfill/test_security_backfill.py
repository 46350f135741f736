"""Per SIEM: a Defender alert the SIEM lost is named by reconcile (by its Graph id) and restored by
backfill, every lost version exactly once; the next reconcile finds nothing missing.

The SIEM's losses come from the emulator's ground truth (`in_siem = false` per version), never from
the agent. The gap covers whole reconcile buckets (hours), so "an alert the SIEM lacks in a bucket"
and "a version the SIEM lost" name the same alerts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.backfill.helpers import HEC, agent_cmd, agent_env
from tests.emulator_fixture import REPO, running_emulator

STREAMS = ("graph.security_alerts", "graph.security_incidents")


def _scenario(gap_start: datetime) -> str:
    gap_end = gap_start + timedelta(hours=1)
    return f"""
seed = 17
start = "-5h"
end = "-5m"
[tenant]
id = "5e7c1d5a-0b8f-4f43-9d6e-6a1d2c3b4a59"
license = "p2"
[streams."graph.security_alerts"]
records = 60
late_fraction = 0.3
late_window = "10m"
late_delay = "12s"
[streams."graph.security_incidents"]
records = 20
[security]
update_fraction = 0.6
[[siem.gaps]]
stream = "graph.security_alerts"
start = "{gap_start:%Y-%m-%dT%H:%M:%SZ}"
end = "{gap_end:%Y-%m-%dT%H:%M:%SZ}"
drop_fraction = 1.0
"""


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(agent_cmd(*args), env=agent_env(), cwd=REPO, capture_output=True, timeout=180)


def _reconcile(cfg: Path, out: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out.unlink(missing_ok=True)
    proc = _run("reconcile", "--config", str(cfg), "--since", "8h", "--include-unsettled", "--format", "json",
                "--out", str(out), *args)
    assert out.exists(), proc.stderr.decode()[-3000:]
    return proc.returncode, json.loads(out.read_text())


@pytest.mark.parametrize("siem", ["sentinel", "splunk", "elastic"])
def test_lost_defender_alerts_found_and_restored(tmp_path: Path, siem: str) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    cfg, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg), "--store-dir", str(store), "--siem", siem)
    with running_emulator(_scenario(hour - timedelta(hours=3)), tmp_path / "emu", extra_args=args) as emu:
        cfg.write_text(cfg.read_text().replace("[collection]\n", '[collection]\ninitial_lookback = "6h"\n'
                                               'window = "12h"\n', 1))
        truth = emu.truth()
        for _ in range(2):  # before and after the late updates: every version the API ever served
            proc = _run("collect", "--once", "--config", str(cfg))
            assert proc.returncode == 0, proc.stderr.decode()[-3000:]
            wait = max(datetime.fromisoformat(t["visible_at"].replace("Z", "+00:00")) for t in truth)
            time.sleep(max(0.0, (wait - datetime.now(UTC)).total_seconds()) + 1)
        lost = Counter(t["id"].rsplit("@", 1)[0] for t in truth if not t["in_siem"])
        kept = {t["id"].rsplit("@", 1)[0] for t in truth if t["in_siem"]}
        assert len(lost) > 5 and set(lost) & kept, "an alert whose first version alone was lost must be named too"

        rc, first = _reconcile(cfg, tmp_path / "r1.json")
        named = {i for s in first["streams"] for i in s["missing_in_siem"]}
        assert rc == 3 and named == set(lost), first["streams"]
        assert not any(s["missing_in_agent"] for s in first["streams"]), "the archive holds every version"

        rc, done = _reconcile(cfg, tmp_path / "r2.json", "--backfill")
        assert rc == 0, done["backfill"]
        resp = emu.session().get(f"{emu.info[HEC[siem]]}/_emulator/ingested", timeout=30)
        written: Counter[str] = Counter()
        for ids in resp.json()["places"].values():
            written.update(ids)
        assert written == lost, "every lost version written exactly once, nothing else"

        rc, after = _reconcile(cfg, tmp_path / "r3.json")
        assert rc == 0 and not any(s["missing_in_siem"] for s in after["streams"])
