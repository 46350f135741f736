"""S3 outage during collection (issue 4): SeaweedFS is stopped mid-run and started again. The
collector survives it (failed windows keep their cursors; writes S3 refuses go to the outage
spool); after S3 is back the archive equals the truth, the spool is empty and `agent verify` passes."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    GRAPH_STREAMS,
    assert_exact,
    edit_config,
    expected_ids,
    exported_ids,
    outcomes,
    run_agent,
    start_agent,
)
from tests.e2e.test_graph_e2e import graph_scenario, start_args
from tests.emulator_fixture import running_emulator
from tests.store.servers import ACCESS_KEY, REGION, SECRET_KEY, new_bucket

AWS = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
       "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
       "AWS_EC2_METADATA_DISABLED": "true"}


def spooled(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*.spool")] if spool.exists() else []


@pytest.mark.s3
@pytest.mark.slow
def test_s3_outage_mid_run_loses_nothing(tmp_path: Path, seaweed: Any) -> None:
    cfg, spool = tmp_path / "agent.toml", tmp_path / "spool"
    bucket = new_bucket(seaweed.client)
    scenario = graph_scenario(100, late_delay="1s", quota=10)
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)) as emu:
        store = (f'[store]\ntype = "s3"\nbucket = "{bucket}"\nprefix = "archive"\nregion = "{REGION}"\n'
                 f'endpoint_url = "{seaweed.endpoint}"\naddressing_style = "path"\nspool_dir = "{spool}"\n'
                 'max_attempts = 1\nconnect_timeout = "1s"\nread_timeout = "5s"\n')
        cfg.write_text(re.sub(r"\[store\]\n(?:[^\[\n][^\n]*\n)*", store, cfg.read_text()))
        # Many small windows so writes keep coming while S3 is away (10 requests per 10 s).
        edit_config(cfg, "collection", window="30m", initial_lookback="4h", page_size=100)
        edit_config(cfg, "log", format="json")
        log = tmp_path / "collector.log"
        proc = start_agent(["collect", "--once", "--config", str(cfg)], env=AWS, log=log)
        time.sleep(6)
        assert proc.poll() is None, "collection ended before the outage"
        with seaweed.outage():
            time.sleep(10)
        proc.wait(300)
        text = log.read_text()
        assert "cannot reach" in text, "the outage did not hit the collector"
        # It ended its pass in order (an outcome per stream), not with an unhandled store error.
        assert len(outcomes(text)) == len(GRAPH_STREAMS), text[-2000:]
        # Known limit: reads of checkpoints, status and partition indexes still need S3, so streams stop at their next
        # window during the outage instead of spooling on; the cursor never passes unstored records.
        # Whatever failed during the outage is collected again by the next pass (cursors did not move).
        at = datetime.now(UTC)
        final = run_agent(["collect", "--once", "--config", str(cfg)], env=AWS)
        assert final.returncode == 0, final.stderr[-3000:]
        assert not spooled(spool), "the spool was not drained"
        assert_exact(exported_ids(cfg, GRAPH_STREAMS, env=AWS), expected_ids(emu.truth(), at, GRAPH_STREAMS))
        verify = run_agent(["verify", "--config", str(cfg)], env=AWS)
        assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
        keys = seaweed.client.list_objects_v2(Bucket=bucket, Prefix="archive/tenant=")["KeyCount"]
        assert keys > 0
