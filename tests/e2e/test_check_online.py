"""`agent check --online` asks the SIEM a real query (and obtains its write path when backfill is
configured): a wrong Splunk token used to pass as "config ok"."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.backfill.helpers import agent_cmd, agent_env, scenario
from tests.emulator_fixture import REPO, running_emulator


def _check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(agent_cmd("check", "--online", "--config", str(cfg)), env=agent_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("siem", ["sentinel", "splunk", "elastic"])
def test_check_online_queries_the_siem(tmp_path: Path, siem: str) -> None:
    cfg = tmp_path / "agent.toml"
    args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"), "--siem", siem)
    with running_emulator(scenario(), tmp_path / "emu", extra_args=args):
        proc = _check(cfg)
        assert proc.returncode == 0, proc.stderr
        assert "SIEM query ok" in proc.stdout
        if siem == "sentinel":
            assert "Logs Ingestion token obtained" in proc.stdout
        secret = next(p for p in cfg.parent.iterdir() if p.name in ("splunk_token", "elastic_api_key"))  \
            if siem != "sentinel" else None
        if secret is not None:
            secret.write_text("wrong-token-0000")
            proc = _check(cfg)
            assert proc.returncode == 1
            assert f"SIEM {siem} query failed" in proc.stderr and "Traceback" not in proc.stderr
            assert "wrong-token" not in proc.stderr
