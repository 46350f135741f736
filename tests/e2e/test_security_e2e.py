"""End-to-end proofs for Defender alerts and incidents (Graph security API): every version kept once.

An alert triaged after the first pass gets a new `lastUpdateDateTime`; the archive must then hold
both versions (the first is never overwritten), each exactly once, under the fault matrix.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from tests.e2e.helpers import assert_exact, crash_repeatedly, edit_config, outcomes, parse_rfc3339, run_agent
from tests.emulator_fixture import running_emulator

STREAMS = ("graph.security_alerts", "graph.security_incidents")

SCENARIO = """
seed = 5
start = "-3h"
end = "-10m"
[tenant]
license = "p2"
[streams."graph.security_alerts"]
records = 24
duplicate_fraction = 0.1
late_fraction = 0.5
late_window = "15m"
late_delay = "{late_delay}"
[streams."graph.security_incidents"]
records = 10
late_fraction = 0.5
late_window = "15m"
late_delay = "{late_delay}"
[security]
update_fraction = 0.7
permission = "{permission}"
[faults]
throttle = 0.15
server_error = 0.15
reset = 0.05
truncated = 0.05
html_error = 0.05
empty_page = 0.1
token_expiry = 0.03
retry_after = 1
"""


def _args(tmp_path: Path) -> tuple[str, ...]:
    return ("--write-config", str(tmp_path / "agent.toml"), "--store-dir", str(tmp_path / "store"))


def _archived(cfg: Path) -> dict[str, list[str]]:
    """Version keys per stream as exported: `<id>@<lastUpdateDateTime>` (docs/archive rule)."""
    out: dict[str, list[str]] = {}
    for s in STREAMS:
        proc = run_agent(["export", "--config", str(cfg), "--stream", s])
        assert proc.returncode == 0, proc.stderr
        recs = [orjson.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        out[s] = [f"{r['id']}@{r['lastUpdateDateTime']}" for r in recs]
    return out


def _served_between(truth: list[dict[str, object]], first: datetime, last: datetime) -> dict[str, set[str]]:
    """Versions some pass could see: visible by `last`, and not replaced before `first` began."""
    out: dict[str, set[str]] = {s: set() for s in STREAMS}
    for t in truth:
        gone = t.get("superseded_at")
        if t["stream"] in out and parse_rfc3339(str(t["visible_at"])) <= last and (
                gone is None or parse_rfc3339(str(gone)) > first):
            out[str(t["stream"])].add(str(t["id"]))
    return out


def test_alert_versions_collected_exactly_once_under_faults(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    # Pass 1 must end before the updates are published (late_delay after the emulator started). Under
    # these faults it takes about 20 s (retry delays, most of it, and the agent's start): 25 s left a
    # loaded machine a few seconds; 60 s leaves it three times what the pass needs.
    with running_emulator(SCENARIO.format(late_delay="60s", permission="granted"), tmp_path,
                          extra_args=_args(tmp_path)) as emu:
        start = datetime.now(UTC)
        edit_config(cfg, "collection", window="30d", initial_lookback="4h", overlap="1h")
        edit_config(cfg, "log", format="json")
        text = cfg.read_text()
        assert all(f'"{s}"' in text for s in STREAMS), "--write-config must list the scenario's security streams"
        truth = emu.truth()
        replaced = [t for t in truth if t.get("superseded_at")]
        assert replaced, "the scenario must have alerts whose first version is replaced while running"

        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert first.returncode == 0, first.stderr[-3000:]
        assert datetime.now(UTC) < min(parse_rfc3339(str(t["superseded_at"])) for t in replaced), \
            "pass 1 must end before the updates are published, or the proof proves nothing"

        later = max(parse_rfc3339(str(t["visible_at"])) for t in truth)
        time.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()) + 1)
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 0, second.stderr[-3000:]
        assert all(o["ok"] for o in outcomes(second.stderr))
        got = _archived(cfg)
        assert_exact(got, _served_between(truth, start, datetime.now(UTC)))
        first_versions = {str(t["id"]) for t in replaced}
        assert first_versions <= set(got["graph.security_alerts"]) | set(got["graph.security_incidents"])
        assert any(f["fault"] != "quota" for f in emu.faults()), "no fault was injected"
        verify = run_agent(["verify", "--config", str(cfg)])
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_missing_security_permission_fails_with_the_permission_named(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(SCENARIO.format(late_delay="25s", permission="missing"), tmp_path,
                          extra_args=_args(tmp_path)):
        edit_config(cfg, "collection", window="30d", initial_lookback="4h")
        proc = run_agent(["collect", "--once", "--config", str(cfg), "--stream", "graph.security_alerts"])
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "SecurityAlert.Read.All" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_sigkilled_collectors_then_every_version_once(tmp_path: Path) -> None:
    """SIGKILLs between segment, sidecar, manifest and cursor: the archive still holds every version once."""
    cfg = tmp_path / "agent.toml"
    scenario = SCENARIO.format(late_delay="1s", permission="granted").replace("records = 24", "records = 150")
    with running_emulator(scenario, tmp_path, extra_args=_args(tmp_path)) as emu:
        edit_config(cfg, "collection", window="2h", initial_lookback="4h", segment_max_records=20)
        time.sleep(2)  # past late_delay: every version the API will ever serve is visible from here on
        crash_repeatedly(cfg, tmp_path / "collector.log", random.Random(7), kills=5)
        final = run_agent(["collect", "--once", "--config", str(cfg)])
        assert final.returncode == 0, final.stderr[-3000:]
        now = datetime.now(UTC)
        assert_exact(_archived(cfg), _served_between(emu.truth(), now, now))
        verify = run_agent(["verify", "--config", str(cfg)])
        assert verify.returncode == 0, verify.stdout + verify.stderr
