"""Logs Ingestion truncates field values over 64 KB (learn.microsoft.com/azure/azure-monitor/service-limits
#logs-ingestion-api). The emulator cuts them as the service does; backfill never lets a record be cut
silently: an oversized record travels as one row whose RawRecord references the archived record, is
counted and reported, and the next reconcile finds it present exactly once.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from tests.backfill.helpers import backfill_env, duplicates, missing
from tests.emulator.helpers import bearer, token

BIG = 100_000  # bytes of one property value: over the 64 KB field limit on its own


def _audit(n: int, big: bool) -> dict[str, object]:
    value = "x" * BIG if big else "small"
    return {"id": f"Directory_{n:08d}-0000-4000-8000-000000000000_ABC_{n}", "activityDateTime": "2026-01-01T00:00:00Z",
            "activityDisplayName": "Update application", "category": "ApplicationManagement",
            "correlationId": f"{n:08d}-1111-4111-8111-111111111111", "loggedByService": "Core Directory",
            "operationType": "Update", "result": "success", "resultReason": "",
            "initiatedBy": {"app": None, "user": {"id": "u1", "userPrincipalName": "a@contoso.example"}},
            "targetResources": [{"id": "t1", "displayName": "app", "type": "Application",
                                 "modifiedProperties": [{"displayName": "KeyDescription", "oldValue": "[]",
                                                         "newValue": value}]}],
            "additionalDetails": []}


def _scenario(tmp_path: Path) -> str:
    corpus = tmp_path / "audits.ndjson"
    corpus.write_bytes(b"\n".join(orjson.dumps(_audit(n, n % 3 == 0)) for n in range(9)) + b"\n")
    return f"""\
seed = 5
start = "-30h"
end = "-3h"
[tenant]
id = "5e7c1d5a-0b8f-4f43-9d6e-6a1d2c3b4a59"
license = "p2"
[streams."graph.directory_audits"]
corpus = "{corpus}"
[quota]
graph_requests_per_10s = 0
[[siem.gaps]]
stream = "*"
start = "-31h"
end = "-2h"
drop_fraction = 1.0
"""


def _query(env, kql: str) -> list[list[object]]:  # type: ignore[no-untyped-def]
    emu = env.emu
    resp = emu.session().post(f"{emu['loganalytics']}/v1/workspaces/{emu['workspace_id']}/query",
                              json={"query": kql, "timespan": "P3D"},
                              headers=bearer(token(emu, "https://api.loganalytics.io/.default")), timeout=60)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["tables"][0]["rows"])


def test_emulated_logs_ingestion_cuts_a_field_over_64_kb_and_still_answers_204(tmp_path):
    with backfill_env(tmp_path, "sentinel", scenario_text=_scenario(tmp_path)) as env:
        emu = env.emu
        when = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        row = {"TimeGenerated": when, "Id": "big-1", "SourceStream": "x",
               "RawRecord": {"v": "é" * 40_000}}  # 80,000 UTF-8 bytes of JSON text
        url = (f"{emu['ingestion']}/dataCollectionRules/{emu['dcr_immutable_id']}/streams/"
               f"Custom-AuditLogs_Backfill_CL?api-version=2023-01-01")
        resp = emu.session().post(url, data=gzip.compress(orjson.dumps([row])), timeout=60, headers={
            **bearer(token(emu, "https://monitor.azure.com//.default")), "Content-Type": "application/json",
            "Content-Encoding": "gzip"})
        assert resp.status_code == 204, resp.text
        [[raw]] = _query(env, 'AuditLogs_Backfill_CL | where Id == "big-1" | project RawRecord')
        assert isinstance(raw, str) and len(raw.encode()) <= 65_536 < len(orjson.dumps(row["RawRecord"]))


def test_backfill_sends_oversized_records_by_reference_counted_and_present_once(tmp_path):
    with backfill_env(tmp_path, "sentinel", scenario_text=_scenario(tmp_path)) as env:
        lost = {r["id"] for r in env.emu.truth() if not r["in_siem"]}
        big = {i for i in lost if int(i.rsplit("_", 1)[1]) % 3 == 0}
        assert len(lost) == 9 and len(big) == 3
        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        s = done["streams"][0]
        assert s["backfill"]["sent_by_reference"] == 3 and set(s["backfill"]["by_reference_ids"]) == big
        assert any("reference to the archived record" in n for n in s["notes"])
        rows = _query(env, "AuditLogs_Backfill_CL | project Id, RawRecord")
        assert sorted(r[0] for r in rows) == sorted(lost), "one row per record"
        for rid, raw in rows:
            doc = json.loads(str(raw))  # never cut: every RawRecord still parses
            if rid in big:
                ref = doc["ms_log_agent_reference"]
                assert ref["id"] == rid and ref["bytes"] > BIG and len(ref["sha256"]) == 64
                assert doc["activityDisplayName"] == "Update application", "small fields kept for detections"
            else:
                assert doc["id"] == rid and "ms_log_agent_reference" not in doc
        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after)
