"""Nothing but validated ids, names and times reaches a SIEM query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.errors import ConfigError
from agent.siem.base import valid_id, valid_name, valid_value
from agent.siem.config import parse
from agent.siem.elastic import reader as elastic
from agent.siem.sentinel import reader as sentinel
from agent.siem.splunk import reader as splunk
from agent.sources.base import Window

GUID = "2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"
HOSTILE = [
    'x" or 1==1 //', "a' | delete", "id\" | project-away", '") | union *', "a b", "x|y", "x;drop",
    "x\\\"", "x\nwhere", "*", "a,b", "a=b", "(a)", "x) OR (1=1", "`cmd`", "$(id)", "", "A" * 201,
    f"{GUID} ", f"{GUID}\" or \"1\"==\"1",
]


def test_ids_have_the_documented_forms() -> None:
    assert valid_id("graph.signins.interactive", GUID)
    assert valid_id("o365.exchange", GUID.upper())
    assert valid_id("graph.directory_audits", "Directory_29e7c9d1-9a86-46b7-a4ff-1ba2de8c1d6b_1ZMEB_98521749")
    assert not valid_id("graph.signins.interactive", "Directory_abc_1")  # only GUIDs outside directory audits


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_ids_are_rejected(value: str) -> None:
    for stream in ("graph.signins.interactive", "graph.directory_audits", "o365.exchange"):
        assert not valid_id(stream, value)


@pytest.mark.parametrize("value", [v for v in HOSTILE if v not in ("*",)])
def test_hostile_names_and_values_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError):
        valid_value(value, "x")
    if value not in ("",):
        with pytest.raises(ConfigError):
            valid_value(value + '"', "x")
    with pytest.raises(ConfigError):
        valid_name(value + " ", "x")


def test_config_rejects_unknown_keys_and_literal_secrets() -> None:
    with pytest.raises(ConfigError, match=r"unknown key.*wokspace_id"):
        parse({"type": "sentinel", "workspace_id": GUID, "wokspace_id": GUID})
    with pytest.raises(ConfigError, match=r"unknown key.*tabel"):
        parse({"type": "sentinel", "workspace_id": GUID, "streams": {"o365.exchange": {"tabel": "X"}}})
    with pytest.raises(ConfigError, match="never written"):
        parse({"type": "splunk", "url": "https://s:8089", "token": "abc"})
    with pytest.raises(ConfigError, match="filter value"):
        parse({"type": "sentinel", "workspace_id": GUID,
               "streams": {"o365.exchange": {"where": {"OfficeWorkload": ['Exchange") | union *']}}}})
    with pytest.raises(ConfigError, match="bucket"):
        parse({"type": "sentinel", "workspace_id": GUID, "bucket": "7m"})


def test_overrides_replace_the_defaults() -> None:
    cfg = parse({"type": "sentinel", "workspace_id": GUID, "backfill_suffix": "",
                 "streams": {"o365.exchange": {"table": "MyOffice_CL", "id_field": "RecordId_g",
                                               "where": {"Workload_s": ["Exchange"]}}}})
    t = cfg.targets["o365.exchange"]
    assert (t.source, t.id_field, t.extra_sources) == ("MyOffice_CL", "RecordId_g", ())
    assert [(f.field, f.values, f.negate) for f in t.filters] == [("Workload_s", ("Exchange",), False)]
    assert cfg.targets["graph.signins.interactive"].source == "SigninLogs"


def test_queries_hold_only_configured_names_validated_ids_and_times() -> None:
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))
    scfg = parse({"type": "sentinel", "workspace_id": GUID})
    t = scfg.targets["o365.exchange"]
    q = sentinel.present_query(t, GUID, window, [GUID])
    assert q.startswith("union isfuzzy=true OfficeActivity, OfficeActivity_Backfill_CL | where TimeGenerated >= "
                        "datetime(2026-01-01T00:00:00.000000Z)")
    assert 'OfficeId in ("' + GUID + '")' in q and "OrganizationId == " in q
    assert "RecordType !in (\"ComplianceDLPSharePoint\", \"ComplianceDLPExchange\")" in q
    with pytest.raises(Exception, match="refusing"):
        sentinel.present_query(t, GUID, window, ['x" or "1"=="1'])
    with pytest.raises(Exception, match="refusing"):
        splunk.present_search(t, GUID, ['x" OR index=*'])
    q = splunk.count_search(t, GUID, timedelta(hours=1))
    assert "| bin _time span=3600s | stats count AS n, dc(OfficeId) AS d BY _time" in q
    body = elastic.base_query(t, GUID, window)
    assert body["bool"]["filter"][0]["range"]["TimeGenerated"]["lt"] == "2026-01-01T01:00:00.000Z"
