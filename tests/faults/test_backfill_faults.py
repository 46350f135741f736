"""Fault matrix rows for the SIEM write endpoints: each ingestion fault alone, per SIEM.

The expected records come from the emulator's ground truth (`tests.backfill.helpers`), and the
verdict from the emulated SIEM's own account of what it stored, duplicates counted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.backfill.helpers import backfill_env

pytestmark = pytest.mark.slow

RETRYING = {"backfill_batch_records": 10, "backfill_max_attempts": 12, "backfill_rate": 0}
FAST_ACKS = {"hec_ack_timeout": "1s", "hec_ack_interval": "0.1s"}
CASES = [(siem, knob) for siem in ("sentinel", "splunk", "elastic")
         for knob in ("ingest_throttle", "ingest_server_error", "ingest_lost_response")]
CASES += [("splunk", "hec_ack_lost"), ("elastic", "bulk_item_reject")]


def _exactly_once(env: object, lost: set[str]) -> bool:
    counts = env.ingested_counts()  # type: ignore[attr-defined]
    return set(counts) == lost and set(counts.values()) == {1}


@pytest.mark.parametrize(("siem", "knob"), CASES)
def test_one_ingestion_fault(tmp_path: Path, siem: str, knob: str, outcome: Callable[[str, str], None]) -> None:
    config = {**RETRYING, **(FAST_ACKS if siem == "splunk" else {})}
    with backfill_env(tmp_path, siem, plan={knob: 0.5}, config=config) as env:
        lost = env.lost()
        rc, _ = env.reconcile("--backfill")
        done = rc == 0 and _exactly_once(env, lost)
    outcome(f"write.{siem}.{knob}", "retried to completion" if done else f"rc={rc}")


def test_oversized_batch(tmp_path: Path, outcome: Callable[[str, str], None]) -> None:
    with backfill_env(tmp_path, "sentinel", plan={"ingest_max_bytes": 20_000}) as env:
        lost = env.lost()
        rc, _ = env.reconcile("--backfill")
        done = rc == 0 and _exactly_once(env, lost)
    outcome("write.sentinel.413", "retried to completion" if done else f"rc={rc}")


def test_invalid_hec_token(tmp_path: Path, outcome: Callable[[str, str], None]) -> None:
    with backfill_env(tmp_path, "splunk") as env:
        (env.config.parent / "splunk_hec_token").write_text("00000000-0000-0000-0000-000000000000")
        rc, report = env.reconcile("--backfill")
        visible = rc == 3 and "the HEC token is invalid" in report["backfill"]["error"] \
            and report["backfill"]["acknowledged"] == 0 and env.ingested_counts() == {}
    outcome("write.splunk.401", "visible failure" if visible else f"rc={rc}")
