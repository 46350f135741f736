"""`agent.siem.elastic.rows`: the default indices of each stream, and the document a backfilled
record becomes: the configured id / time / tenant / filter fields set, the record as `event.original`."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from agent.siem.elastic import rows
from agent.siem.elastic.reader import base_query
from agent.siem.rows import MARK
from agent.sources.base import Window

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
GUID = "2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"
SHAREPOINT = {"Id": GUID, "CreationTime": "2026-03-10T10:00:00", "Workload": "OneDrive", "RecordType": 6}


def test_defaults_follow_the_integrations() -> None:
    d = rows.defaults()
    assert d["graph.signins.interactive"].source == "logs-azure.signinlogs-*"
    assert d["graph.directory_audits"].id_field == "azure.auditlogs.properties.id"  # no event.id there
    assert (d["o365.sharepoint"].source, d["o365.sharepoint"].id_field) == ("logs-o365.audit-*", "event.id")


def test_a_document_sets_each_configured_field_as_a_path() -> None:
    target = rows.defaults()["o365.sharepoint"]
    doc = rows.document(target, TENANT, "o365.sharepoint", SHAREPOINT, NOW)
    assert doc["@timestamp"] == "2026-03-10T10:00:00Z" and doc["event"]["id"] == GUID
    assert orjson.loads(doc["event"]["original"]) == SHAREPOINT
    assert doc["organization"] == {"id": TENANT}
    assert doc["event"]["provider"] == "OneDrive" and doc["o365"] == {"audit": {"RecordType": "6"}}
    assert doc["labels"] == {"backfill": MARK, "backfilled_at": "2026-03-10T12:00:00Z"}
    assert doc["ms_log_agent"] == {"stream": "o365.sharepoint", "tenant": TENANT}
    # the reconcile query's filters hold for the document
    query = base_query(target, TENANT, Window(datetime(2026, 3, 10, 9, tzinfo=UTC), NOW))
    terms = [f["terms"] for f in query["bool"]["filter"] if "terms" in f]
    assert {"event.provider": ["SharePoint", "OneDrive"]} in terms
    assert {"terms": {"o365.audit.RecordType": ["11", "13"]}} in query["bool"]["must_not"]


def test_a_nested_id_field_is_built_and_the_event_time_copied_where_configured() -> None:
    target = rows.defaults()["graph.directory_audits"]
    rec = {"id": GUID, "activityDateTime": "2026-03-10T10:00:00Z"}
    doc = rows.document(target, TENANT, "graph.directory_audits", rec, NOW)
    assert doc["azure"] == {"auditlogs": {"properties": {"id": GUID}}, "tenant_id": TENANT}

