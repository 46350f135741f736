"""`agent.siem.splunk.rows`: the default sourcetypes of each stream, and the HEC event a backfilled
record becomes: the record itself as `event`, in the stream's own sourcetype and index."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.siem.base import Filter, Target
from agent.siem.rows import MARK
from agent.siem.splunk import rows

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
GUID = "2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"


def test_defaults_follow_the_add_ons() -> None:
    d = rows.defaults()
    assert d["graph.signins.interactive"].source == "azure:aad:signin"
    assert d["graph.signins.interactive"].filters == (Filter("signInEventTypes{}", ("interactiveUser",)),)
    assert (d["o365.exchange"].source, d["o365.exchange"].id_field) == ("o365:management:activity", "Id")
    assert Filter("RecordType", ("11", "13"), negate=True) in d["o365.exchange"].filters  # numbers, as sent


def test_an_event_is_the_record_in_its_sourcetype_and_index() -> None:
    target = Target("azure:aad:audit", "id", "_time", index="o365")
    rec = {"id": GUID, "activityDateTime": "2026-03-10T10:00:00.25Z", "activityDisplayName": "Add user"}
    ev = rows.event(target, "t", "graph.directory_audits", rec, NOW)
    assert ev["event"] is rec and ev["sourcetype"] == "azure:aad:audit" and ev["index"] == "o365"
    assert ev["time"] == datetime(2026, 3, 10, 10, 0, 0, 250000, tzinfo=UTC).timestamp()
    assert ev["host"] == MARK and ev["source"] == f"{MARK}:backfill"
    assert ev["fields"] == {"backfill": MARK, "backfilled_at": "2026-03-10T12:00:00Z",
                            "ms_log_agent_stream": "graph.directory_audits"}
    assert rows.event(Target("s", "id", "_time"), "t", "graph.directory_audits", rec, NOW)["index"] == "main"


def test_a_filter_field_the_record_lacks_is_indexed_beside_it() -> None:
    """Sign-in records from Graph carry no `signInEventTypes` of the add-on's: the event gets it as an
    indexed field, so the reconcile search (`signInEventTypes{} IN (...)`) finds the backfilled event."""
    target = rows.defaults()["graph.signins.interactive"]
    rec = {"id": GUID, "createdDateTime": "2026-03-10T10:00:00Z"}
    ev = rows.event(target, "t", "graph.signins.interactive", rec, NOW)
    assert ev["fields"]["signInEventTypes{}"] == "interactiveUser"
    with_it = {**rec, "signInEventTypes": ["interactiveUser"]}
    assert "signInEventTypes{}" not in rows.event(target, "t", "graph.signins.interactive", with_it, NOW)["fields"]
