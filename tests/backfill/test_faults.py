"""Faults on the ingestion side: retried, split or reported; nothing recorded as acknowledged that was not.

Each test asserts on the emulated SIEM's own account of what it stored (duplicates counted).
"""

from __future__ import annotations

import json

import pytest

from tests.backfill.helpers import backfill_env, duplicates, missing

RETRYING = {"backfill_batch_records": 10, "backfill_max_attempts": 12, "backfill_rate": 0}
CASES = {
    "sentinel": {"ingest_throttle": 0.3, "ingest_server_error": 0.2, "ingest_lost_response": 0.3},
    "splunk": {"ingest_throttle": 0.3, "ingest_server_error": 0.2, "ingest_lost_response": 0.2,
               "hec_ack_lost": 0.3, "hec_ack_delay": "0.2s"},
    "elastic": {"ingest_throttle": 0.2, "ingest_server_error": 0.1, "ingest_lost_response": 0.2,
                "bulk_item_reject": 0.2},
}
FAST_ACKS = {"hec_ack_timeout": "1s", "hec_ack_interval": "0.1s"}


def acked_in_ledger(env) -> set[str]:
    out: set[str] = set()
    for path in env.ledger_batches():
        doc = json.loads(path.read_text())
        out |= set(doc["acked"]) | set(doc["present"])
    return out


@pytest.mark.parametrize("siem", sorted(CASES))
def test_throttles_5xx_lost_answers_and_lost_acks_still_give_exactly_once(tmp_path, siem):
    config = {**RETRYING, **(FAST_ACKS if siem == "splunk" else {})}
    with backfill_env(tmp_path, siem, plan=CASES[siem], config=config) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        seen = env.ingested()
        batches = -(-len(lost) // 10)
        assert seen["requests"] > batches + 3, "faults were injected and retried"
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, {i: n for i, n in counts.items() if n != 1}
        assert acked_in_ledger(env) == lost
        if siem != "elastic":  # lost answers / lost acks were resolved by asking the SIEM, not by resending
            assert done["backfill"]["already_present"] > 0
        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after)


def test_a_batch_over_the_size_limit_is_split(tmp_path):
    with backfill_env(tmp_path, "sentinel", plan={"ingest_max_bytes": 20_000}) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        assert sum(s["backfill"]["splits"] for s in done["streams"] if s.get("backfill")) > 0
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}


def test_a_record_over_the_limit_on_its_own_is_reported_not_acknowledged(tmp_path):
    with backfill_env(tmp_path, "sentinel", plan={"ingest_max_bytes": 1024}) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill", "--stream", "graph.signins.interactive")
        assert rc == 3
        s = done["streams"][0]["backfill"]
        assert s["failed"] == s["missing"] > 0 and s["acknowledged"] == 0 and s["remaining"] == s["missing"]
        assert all("size limit" in why for why in s["failed_ids"].values())
        assert env.ingested_counts() == {} and acked_in_ledger(env) == set()
        rc, again = env.reconcile()
        assert missing(again) == lost


def test_a_siem_that_never_accepts_leaves_everything_missing_and_says_so(tmp_path):
    with backfill_env(tmp_path, "elastic", plan={"bulk_item_reject": 1.0},
                      config={"backfill_max_attempts": 2, "backfill_rate": 0}) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill")
        assert rc == 3
        assert done["backfill"]["failed"] == len(lost) and done["backfill"]["acknowledged"] == 0
        assert env.ingested_counts() == {} and acked_in_ledger(env) == set()
        rc, again = env.reconcile("--backfill", "--dry-run")
        assert again["backfill"]["would_send"] == len(lost), "failed ids are sent again by the next run"


def test_unconfirmed_batches_wait_and_are_never_counted_as_acknowledged(tmp_path):
    """Every answer lost (stored anyway) and a real in-doubt wait: in doubt, not acknowledged, not resent."""
    with backfill_env(tmp_path, "sentinel", plan={"ingest_lost_response": 1.0},
                      config={"backfill_in_doubt_wait": "1h"}) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill")
        assert rc == 3
        b = done["backfill"]
        assert b["in_doubt"] == len(lost) and b["acknowledged"] == 0 and b["remaining"] == len(lost)
        assert acked_in_ledger(env) == set()
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, "stored once, never resent"
        rc, after = env.reconcile()
        assert rc == 0 and not missing(after), "the SIEM does hold them: the next reconcile says so"


def test_hec_errors_are_named(tmp_path):
    with backfill_env(tmp_path, "splunk") as env:
        (env.config.parent / "splunk_hec_token").write_text("00000000-0000-0000-0000-000000000000")
        rc, done = env.reconcile("--backfill")
        assert rc == 3
        assert "the HEC token is invalid" in done["backfill"]["error"]
        assert done["backfill"]["acknowledged"] == 0 and env.ingested_counts() == {}
