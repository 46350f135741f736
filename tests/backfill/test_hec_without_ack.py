"""HEC without indexer acknowledgement (Splunk Cloud): emulated as such, detected, and settled by search.

help.splunk.com "About HTTP Event Collector Indexer Acknowledgment": HEC supports indexer
acknowledgement in Splunk Enterprise only (Splunk Cloud only for Kinesis Firehose).
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from tests.backfill.helpers import agent_cmd, agent_env, backfill_env, duplicates, missing
from tests.emulator_fixture import REPO

FAST = {"hec_ack_timeout": "5s", "hec_ack_interval": "0.1s"}


def _hec(env, path: str, body: bytes, channel: str | None = None):  # type: ignore[no-untyped-def]
    token = (env.config.parent / "splunk_hec_token").read_text()
    headers = {"Authorization": f"Splunk {token}"}
    if channel:
        headers["X-Splunk-Request-Channel"] = channel
    return env.emu.session().post(f"{env.emu.info['splunk_hec']}{path}", data=body, headers=headers, timeout=30)


def test_emulated_cloud_hec_answers_without_ackid_and_refuses_ack_queries(tmp_path):
    with backfill_env(tmp_path, "splunk", plan={"hec_ack": False}) as env:
        event = b'{"event": {"Id": "x-1"}, "sourcetype": "o365:management:activity"}'
        resp = _hec(env, "/services/collector/event", event)  # no channel needed without acks
        assert resp.status_code == 200 and resp.json() == {"text": "Success", "code": 0}
        resp = _hec(env, "/services/collector/ack", b'{"acks": [0]}', channel=str(uuid.uuid4()))
        assert resp.status_code == 400 and resp.json()["code"] == 14


def test_emulated_enterprise_hec_still_gives_ackids(tmp_path):
    with backfill_env(tmp_path, "splunk") as env:
        event = b'{"event": {"Id": "x-1"}}'
        assert _hec(env, "/services/collector/event", event).json()["code"] == 10, "channel required with acks"
        resp = _hec(env, "/services/collector/event", event, channel=str(uuid.uuid4()))
        assert resp.status_code == 200 and isinstance(resp.json()["ackId"], int)


@pytest.mark.parametrize("hec_ack", [True, False])
def test_backfill_to_cloud_hec_is_settled_by_search_exactly_once(tmp_path, hec_ack):
    """hec_ack left on (the default) used to abort the backfill after HEC indexed the first batch;
    hec_ack = false used to count a bare 200 as stored. Both now confirm by searching."""
    with backfill_env(tmp_path, "splunk", plan={"hec_ack": False, "ingest_latency": "1s"},
                      config={**FAST, "backfill_batch_records": 50, "backfill_rate": 0, "hec_ack": hec_ack}) as env:
        lost = env.lost()
        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        b = done["backfill"]
        assert "error" not in b and b["remaining"] == 0 and b["in_doubt"] == 0
        assert b["already_present"] == len(lost), "confirmed by the presence search, not by the 200"
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}
        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after)


def test_not_yet_searchable_after_the_timeout_stays_in_doubt_then_settles_without_resending(tmp_path):
    with backfill_env(tmp_path, "splunk", plan={"hec_ack": False, "ingest_latency": "4s"},
                      config={"hec_ack_timeout": "1s", "hec_ack_interval": "0.2s", "backfill_rate": 0}) as env:
        lost = env.lost()
        rc, first = env.reconcile("--backfill")
        assert rc == 3 and first["backfill"]["in_doubt"] == len(lost) and first["backfill"]["already_present"] == 0
        time.sleep(5.5)  # past the latency and the generated backfill_in_doubt_wait (5s)
        rc, second = env.reconcile("--backfill")
        assert rc == 0 and not missing(second), "the reconcile itself now finds them"
        assert second["backfill"]["missing"] == 0 and second["backfill"].get("sent", 0) == 0
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, "found by search, never resent"


def test_check_online_names_an_endpoint_without_acks(tmp_path):
    with backfill_env(tmp_path, "splunk", plan={"hec_ack": False}) as env:
        proc = subprocess.run(agent_cmd("check", "--online", "--config", str(env.config)), env=agent_env(),
                              cwd=REPO, capture_output=True, timeout=120)
        out = proc.stdout.decode()
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert "HEC without indexer acknowledgement" in out and "hec_ack = false" in out


def test_check_online_confirms_acks_on_enterprise(tmp_path):
    with backfill_env(tmp_path, "splunk") as env:
        proc = subprocess.run(agent_cmd("check", "--online", "--config", str(env.config)), env=agent_env(),
                              cwd=REPO, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert "HEC indexer acknowledgement on" in proc.stdout.decode()
