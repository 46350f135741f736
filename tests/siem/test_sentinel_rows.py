"""`agent.siem.sentinel.rows`: the default tables of each stream, and the Logs Ingestion row a
backfilled record becomes (a second reconcile must find it by the same columns)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from agent import json_exact
from agent.siem.sentinel import rows
from agent.siem.sentinel.reader import present_query
from agent.sources.base import Window

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
GUID = "2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"
EXCHANGE = {"Id": GUID, "CreationTime": "2026-03-10T10:00:00", "Workload": "Exchange", "RecordType": 2,
            "Operation": "Send", "OrganizationId": TENANT}


def test_defaults_follow_the_connectors() -> None:
    d = rows.defaults()
    assert (d["graph.signins.interactive"].source, d["graph.signins.interactive"].event_field) == \
        ("SigninLogs", "CreatedDateTime")
    assert d["graph.signins.serviceprincipal"].event_field == ""  # only TimeGenerated there
    assert d["graph.directory_audits"].event_field == "ActivityDateTime"
    assert (d["o365.exchange"].source, d["o365.exchange"].id_field) == ("OfficeActivity", "OfficeId")
    assert d["graph.security_alerts"].id_field == "VendorOriginalId"


def test_a_row_carries_the_columns_reconcile_queries() -> None:
    target = rows.defaults()["o365.exchange"]
    row = rows.row(target, TENANT, "o365.exchange", EXCHANGE, NOW)
    assert row["TimeGenerated"] == "2026-03-10T10:00:00Z" and row["OfficeId"] == GUID
    assert row["OrganizationId"] == TENANT
    assert row["OfficeWorkload"] == "Exchange" and row["RecordType"] == "ExchangeItem"  # the connector's names
    assert row["SourceStream"] == "o365.exchange" and row["AgentBackfill"] is True
    assert row["BackfilledAt"] == "2026-03-10T12:00:00Z" and row["RawRecord"] == EXCHANGE
    # the filters the reconcile query applies hold for the row
    query = present_query(target, TENANT, Window(NOW.replace(hour=9), NOW), [GUID])
    assert 'OfficeWorkload in ("Exchange")' in query and "RecordType !in" in query
    assert row["RecordType"] not in ("ComplianceDLPSharePoint", "ComplianceDLPExchange")


def test_a_table_with_its_own_event_time_column_gets_it_too() -> None:
    target = rows.defaults()["graph.signins.interactive"]
    rec = {"id": GUID, "createdDateTime": "2026-03-10T09:30:00.5Z"}
    row = rows.row(target, TENANT, "graph.signins.interactive", rec, NOW)
    assert row["TimeGenerated"] == "2026-03-10T09:30:00.500000Z" and row["Id"] == GUID
    assert row["AADTenantId"] == TENANT
    # no CreatedDateTime: a backfill table's TimeGenerated is the event time, which the query coalesces to
    assert "CreatedDateTime" not in row and "coalesce(CreatedDateTime, TimeGenerated)" in present_query(
        target, TENANT, Window(NOW.replace(hour=9), NOW), [GUID])


def test_an_unknown_record_type_keeps_its_number_as_text() -> None:
    row = rows.row(rows.defaults()["o365.exchange"], TENANT, "o365.exchange", {**EXCHANGE, "RecordType": 999}, NOW)
    assert row["RecordType"] == "999"


def test_a_record_over_the_field_limit_travels_as_a_reference() -> None:
    big = {**EXCHANGE, "Blob": "x" * (rows.FIELD_LIMIT + 10)}
    assert not rows.fits_field(big) and rows.fits_field(EXCHANGE)
    raw = rows.raw_record(TENANT, "o365.exchange", big)
    ref = raw["ms_log_agent_reference"]
    text = json_exact.dumps(big)
    assert ref["id"] == GUID and ref["bytes"] == len(text) and ref["sha256"] == hashlib.sha256(text).hexdigest()
    assert raw["Operation"] == "Send" and "Blob" not in raw  # small scalars kept for detections
    assert len(json_exact.dumps(raw)) <= rows.FIELD_LIMIT
    assert rows.raw_record(TENANT, "o365.exchange", EXCHANGE) is EXCHANGE
