"""Ingestion latency: what a client writes shows in the SIEM's searches only after a while (Azure
Monitor documents minutes of ingestion time; Splunk indexes and Elasticsearch refreshes after the
write). Emulated in all three (`[siem] ingest_latency`); backfill's in-doubt wait and resend logic
under it: nothing resent while it may still be indexing, nothing left out once it shows.
"""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from tests.backfill.helpers import backfill_env, duplicates, missing
from tests.emulator.helpers import bearer, token

LATENCY = {"sentinel": 6.0, "splunk": 10.0, "elastic": 6.0}  # Splunk's first run is the slowest
PLANS = {
    # every answer lost (stored anyway): the outcome of each batch is unknown
    "sentinel": {"ingest_lost_response": 1.0},
    "splunk": {"ingest_lost_response": 1.0},
    # `_bulk` create with _id is resent at once (a 409 settles it), so only some answers are lost
    "elastic": {"ingest_lost_response": 0.3},
}
CONFIG = {"backfill_batch_records": 20, "backfill_max_attempts": 12, "backfill_rate": 0,
          "hec_ack_timeout": "1s", "hec_ack_interval": "0.1s"}


@pytest.mark.parametrize("siem", sorted(PLANS))
def test_backfill_under_ingestion_latency_writes_each_record_once(tmp_path, siem):
    latency = LATENCY[siem]
    plan = {"ingest_latency": f"{latency}s", **PLANS[siem]}
    config = {k: v for k, v in CONFIG.items() if siem == "splunk" or not k.startswith("hec_")}
    with backfill_env(tmp_path, siem, plan=plan, config=config) as env:
        assert f'backfill_in_doubt_wait = "{int(latency) + 1}s"' in env.config.read_text(), \
            "the generated config waits out the emulated latency"
        lost = env.lost()
        started = time.monotonic()
        rc, first = env.reconcile("--backfill")
        b = first["backfill"]
        if siem == "elastic":
            assert rc == 0 and b["remaining"] == 0, b
        else:
            assert rc == 3 and b["in_doubt"] == len(lost) and b["acknowledged"] == 0, b
        rc, mid = env.reconcile()
        if time.monotonic() - started < latency:  # every write came after `started`: none searchable yet
            assert missing(mid) == lost
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, "nothing resent while it may be indexing"
        time.sleep(max(0.0, latency + 1.5 - (time.monotonic() - started)))
        rc, second = env.reconcile("--backfill")
        assert rc == 0, second["backfill"]
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, "no duplicate rows"
        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after), "nothing left out"


def _write_and_find(env, siem: str) -> tuple[object, object]:  # type: ignore[no-untyped-def]
    """(write one row straight to the emulated SIEM, then: a function telling whether a search finds it)."""
    emu, s, rid = env.emu, env.emu.session(), f"latency-{uuid.uuid4()}"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def secret(name: str) -> str:
        return (env.config.parent / name).read_text()

    if siem == "sentinel":
        url = (f"{emu['ingestion']}/dataCollectionRules/{emu['dcr_immutable_id']}/streams/"
               f"Custom-AuditLogs_Backfill_CL?api-version=2023-01-01")
        r = s.post(url, data=gzip.compress(orjson.dumps([{"TimeGenerated": now, "Id": rid}])), headers={
            **bearer(token(emu, "https://monitor.azure.com//.default")), "Content-Encoding": "gzip",
            "Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 204, r.text
        la = bearer(token(emu, "https://api.loganalytics.io/.default"))

        def found() -> bool:
            q = s.post(f"{emu['loganalytics']}/v1/workspaces/{emu['workspace_id']}/query", headers=la, timeout=30,
                       json={"query": f'AuditLogs_Backfill_CL | where Id == "{rid}" | project Id', "timespan": "P1D"})
            assert q.status_code == 200, q.text
            return bool(q.json()["tables"][0]["rows"])
    elif siem == "splunk":
        r = s.post(f"{emu['splunk_hec']}/services/collector/event", timeout=30,
                   data=orjson.dumps({"event": {"Id": rid}, "sourcetype": "o365:management:activity"}),
                   headers={"Authorization": f"Splunk {secret('splunk_hec_token')}",
                            "X-Splunk-Request-Channel": str(uuid.uuid4())})
        assert r.status_code == 200, r.text

        def found() -> bool:
            q = s.post(f"{emu['splunk']}/services/search/v2/jobs/export", timeout=30,
                       headers={"Authorization": f"Bearer {secret('splunk_token')}"},
                       data={"search": f"search Id={rid}", "output_mode": "json"})
            return any(orjson.loads(line).get("result") for line in q.content.splitlines() if line.strip())
    else:
        key = {"Authorization": f"ApiKey {secret('elastic_api_key')}"}
        body = orjson.dumps({"create": {"_index": "logs-latency-test", "_id": rid}}) + b"\n" + \
            orjson.dumps({"@timestamp": now, "event": {"id": rid}}) + b"\n"
        r = s.post(f"{emu['elastic']}/_bulk", data=body, timeout=30,
                   headers={**key, "Content-Type": "application/x-ndjson"})
        assert r.status_code == 200 and not r.json()["errors"], r.text

        def found() -> bool:
            q = s.post(f"{emu['elastic']}/logs-latency-test/_search", json={"query": {"match_all": {}}},
                       headers=key, timeout=30)
            return bool(q.json()["hits"]["hits"])
    return rid, found


@pytest.mark.parametrize("siem", sorted(PLANS))
def test_emulated_siem_shows_a_write_only_after_ingest_latency(tmp_path, siem):
    with backfill_env(tmp_path, siem, plan={"ingest_latency": "4s"}) as env:
        started = time.monotonic()
        _, found = _write_and_find(env, siem)
        absent = not found()  # type: ignore[operator]
        if time.monotonic() - started < 4:
            assert absent, "searchable before the latency passed"
        time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))
        assert found(), "searchable once the latency passed"  # type: ignore[operator]
