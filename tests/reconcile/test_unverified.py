"""A SIEM the agent cannot read is "could not verify", never "no gaps".

Each emulated SIEM gets a collected archive, then a config that cannot read it: a wrong workspace
id (Sentinel: 404 WorkspaceNotFoundError), an app secret that no longer works (Sentinel: no token
at all), a wrong token (Splunk: 401; Elasticsearch: 401).
`agent reconcile` must exit 1, name the reason on stderr, and every report format must lead with
"Could not verify" and the archive's real counts (not "archive 0 / SIEM 0").
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.backfill.helpers import STREAMS, agent_cmd, agent_env, backfill_env
from tests.emulator_fixture import REPO

WRONG_WORKSPACE = "0badc0de-0000-4000-8000-000000000000"


def _break(kind: str, config: Path) -> None:
    if kind == "sentinel-secret":  # an expired client secret: the token request itself fails
        (config.parent / "client_secret").write_text("expired-secret")
    elif kind == "splunk":
        (config.parent / "splunk_token").write_text("not-the-token")
    elif kind == "elastic":
        (config.parent / "elastic_api_key").write_text("bm90OnRoZS1rZXk=")


def _reconcile(config: Path, fmt: str, out: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(agent_cmd("reconcile", "--config", str(config), "--since", "32h", "--include-unsettled",
                                    "--no-recollect", "--format", fmt, "--out", str(out)),
                          env=agent_env(), cwd=REPO, capture_output=True, timeout=180)


@pytest.mark.parametrize("kind", ["sentinel", "sentinel-secret", "splunk", "elastic"])
def test_an_unreadable_siem_is_could_not_verify(tmp_path: Path, kind: str) -> None:
    config = {"workspace_id": WRONG_WORKSPACE, "max_attempts": 2} if kind == "sentinel" else {"max_attempts": 2}
    with backfill_env(tmp_path, kind.split("-")[0], config=config) as env:
        _break(kind, env.config)
        archived = {s: sum(1 for r in env.emu.truth() if r["stream"] == s) for s in STREAMS}

        proc = _reconcile(env.config, "json", tmp_path / "r.json")
        assert proc.returncode == 1, proc.stderr.decode()[-2000:]
        assert b"agent: Could not verify 3 of 3 stream(s)" in proc.stderr
        assert b"Traceback" not in proc.stderr
        doc = json.loads((tmp_path / "r.json").read_text())
        assert doc["verdict"] == "unverified" and not doc["complete"] and not doc["has_gaps"]
        assert doc["unverified_reasons"]
        for s in doc["streams"]:
            assert not s["verified"] and not s["siem_answered"]
            assert s["missing_in_siem"] == [] and s["missing_in_agent"] == []
            # the archive's real count, not 0: the archive holds what was collected
            assert 0 < s["agent_count"] <= archived[s["stream"]], s
        if kind == "sentinel":
            assert "WorkspaceNotFound" in doc["unverified_reasons"][0]
        elif kind == "sentinel-secret":
            assert "AADSTS7000215" in doc["unverified_reasons"][0]
            assert "expired-secret" not in proc.stderr.decode() + json.dumps(doc)
        else:
            assert "401" in doc["unverified_reasons"][0]

        assert _reconcile(env.config, "md", tmp_path / "r.md").returncode == 1
        md = (tmp_path / "r.md").read_text()
        total = sum(s["agent_count"] for s in doc["streams"])
        assert f"**Could not verify 3 of 3 stream(s): the archive holds {total} record(s) there" in md
        assert "**Result: COULD NOT VERIFY.**" in md
        assert "no gaps" not in md and "| not verified |" in md

        assert _reconcile(env.config, "html", tmp_path / "r.html").returncode == 1
        page = (tmp_path / "r.html").read_text()
        assert '<div class="verdict warn" id="verdict"><p class="warn">Could not verify 3 of 3 stream(s)' in page
        assert "No gaps" not in page
        assert f"the archive holds {total} record(s) there" in page
