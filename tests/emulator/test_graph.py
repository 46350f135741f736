"""Graph audit log lists: envelope, keyset paging, ordering, filters, duplicates, late records,
licence, retention and the reports quota (protocols.md §1)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.emulator.helpers import bearer, graph_all, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

SCENARIO = """
seed = 11
start = "-40d"
end = "-1m"
[tenant]
id = "22222222-2222-4222-8222-222222222222"
license = "p2"
[streams."graph.signins.interactive"]
records = 2300
duplicate_fraction = 0.02
late_fraction = 0.02
late_window = "15m"
late_delay = "3s"
[streams."graph.signins.noninteractive"]
records = 300
[streams."graph.signins.serviceprincipal"]
records = 120
[streams."graph.directory_audits"]
records = 400
[streams."graph.provisioning"]
records = 50
[quota]
graph_requests_per_10s = 0
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("graph")) as e:
        yield e


@pytest.fixture(scope="module")
def tok(emu: EmulatorInfo) -> str:
    return token(emu)


def _truth_ids(emu: EmulatorInfo, stream: str, retained_days: int = 30) -> dict[str, dict[str, Any]]:
    cutoff = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - retained_days * 86400 + 60))
    return {t["id"]: t for t in emu.truth() if t["stream"] == stream and t["event_time"] >= cutoff}


def test_envelope_and_next_link_keeps_the_query(emu: EmulatorInfo, tok: str) -> None:
    url = f"{emu['graph']}/beta/auditLogs/signIns?$top=100&$filter=createdDateTime ge 2020-01-01T00:00:00Z"
    r = emu.session().get(url, headers=bearer(tok))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert "request-id" in r.headers
    body = r.json()
    assert body["@odata.context"] == f"{emu['graph']}/beta/$metadata#auditLogs/signIns"
    assert len(body["value"]) == 100
    link = body["@odata.nextLink"]
    assert link.startswith(f"{emu['graph']}/beta/auditLogs/signIns?")
    assert "$top=100" in link and "$filter=createdDateTime" in link and "$skiptoken=" in link
    rec = body["value"][0]
    assert rec["signInEventTypes"] == ["interactiveUser"]
    assert rec["createdDateTime"].endswith("Z") and len(rec["createdDateTime"].split(".")[1]) == 8


def test_paging_to_exhaustion_equals_truth_newest_first(emu: EmulatorInfo, tok: str) -> None:
    before = datetime.now(UTC)
    items, pages = graph_all(emu.session(), f"{emu['graph']}/beta/auditLogs/signIns?$top=500", tok)
    after = datetime.now(UTC)
    ids = [i["id"] for i in items]
    truth = _truth_ids(emu, "graph.signins.interactive")
    seen_by = {i: datetime.fromisoformat(t["visible_at"]) for i, t in truth.items()}
    assert (
        {i for i, v in seen_by.items() if v <= before}
        <= set(ids)
        <= {i for i, v in seen_by.items() if v <= after}
    )
    assert len(ids) > len(set(ids))  # duplicate_fraction: some records served twice
    times = [i["createdDateTime"] for i in items]
    assert times == sorted(times, reverse=True)
    assert pages >= 4


def test_late_records_appear_after_late_delay(emu: EmulatorInfo, tok: str) -> None:
    truth = _truth_ids(emu, "graph.signins.interactive")
    late = {i for i, t in truth.items() if t["visible_at"] > t["event_time"] and t["event_time"] > "2026"}
    time.sleep(3.2)
    items, _ = graph_all(emu.session(), f"{emu['graph']}/beta/auditLogs/signIns", tok)
    assert set(truth) == {i["id"] for i in items}
    assert late


def test_window_filter_is_inclusive(emu: EmulatorInfo, tok: str) -> None:
    items, _ = graph_all(emu.session(), f"{emu['graph']}/v1.0/auditLogs/directoryAudits", tok)
    chosen = sorted(i["activityDateTime"] for i in items)[100:200]
    lo, hi = chosen[0], chosen[-1]
    url = (
        f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$filter=activityDateTime ge {lo} and "
        f"activityDateTime le {hi}"
    )
    got, _ = graph_all(emu.session(), url, tok)
    assert sorted(i["activityDateTime"] for i in got) == chosen
    assert all(i["id"].startswith("Directory_") for i in got)


def test_event_type_filter_selects_the_stream(emu: EmulatorInfo, tok: str) -> None:
    url = (
        f"{emu['graph']}/beta/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser') "
        "and createdDateTime ge 2000-01-01T00:00:00Z"
    )
    items, _ = graph_all(emu.session(), url, tok)
    assert {i["id"] for i in items} == set(_truth_ids(emu, "graph.signins.noninteractive"))
    assert {tuple(i["signInEventTypes"]) for i in items} == {("nonInteractiveUser",)}
    url = (
        f"{emu['graph']}/beta/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'servicePrincipal' "
        "or t eq 'nonInteractiveUser')"
    )
    both, _ = graph_all(emu.session(), url, tok)
    assert len({i["id"] for i in both}) == len(_truth_ids(emu, "graph.signins.noninteractive")) + len(
        _truth_ids(emu, "graph.signins.serviceprincipal")
    )
    assert [i["createdDateTime"] for i in both] == sorted((i["createdDateTime"] for i in both), reverse=True)


def test_v1_has_no_sign_in_event_types(emu: EmulatorInfo, tok: str) -> None:
    url = f"{emu['graph']}/v1.0/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')"
    r = emu.session().get(url, headers=bearer(tok))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"


def test_v1_sign_ins_are_interactive_in_the_v1_shape(emu: EmulatorInfo, tok: str) -> None:
    r = emu.session().get(f"{emu['graph']}/v1.0/auditLogs/signIns?$top=5", headers=bearer(tok))
    assert r.status_code == 200
    rec = r.json()["value"][0]
    assert "signInEventTypes" not in rec and rec["isInteractive"] is True
    assert rec["id"] in _truth_ids(emu, "graph.signins.interactive")


def test_retention_30_days(emu: EmulatorInfo, tok: str) -> None:
    items, _ = graph_all(emu.session(), f"{emu['graph']}/v1.0/auditLogs/provisioning", tok)
    assert {i["id"] for i in items} == set(_truth_ids(emu, "graph.provisioning"))
    assert len(items) < sum(1 for t in emu.truth() if t["stream"] == "graph.provisioning")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("$top=1001", "invalidRequest"),
        ("$top=0", "invalidRequest"),
        ("$filter=createdDateTime ge '2026-01-01'", "invalidRequest"),
        ("$filter=userPrincipalName eq 'a'", "invalidRequest"),
        ("$skiptoken=!!!", "invalidRequest"),
        ("$select=id", "invalidRequest"),
    ],
)
def test_bad_requests_get_graph_400(emu: EmulatorInfo, tok: str, query: str, code: str) -> None:
    r = emu.session().get(f"{emu['graph']}/beta/auditLogs/signIns?{query}", headers=bearer(tok))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and {"date", "request-id", "client-request-id"} <= err["innerError"].keys()


def test_missing_token_is_401(emu: EmulatorInfo) -> None:
    r = emu.session().get(f"{emu['graph']}/v1.0/auditLogs/signIns")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "WWW-Authenticate" in r.headers


def test_free_licence_and_quota(tmp_path: Any) -> None:
    scenario = """
seed = 1
start = "-10d"
[tenant]
license = "free"
[streams."graph.signins.interactive"]
records = 10
[streams."graph.directory_audits"]
records = 200
[quota]
graph_requests_per_10s = 3
"""
    with running_emulator(scenario, tmp_path) as emu:
        s, tok = emu.session(), token(emu)
        r = s.get(f"{emu['graph']}/v1.0/auditLogs/signIns", headers=bearer(tok))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
        r = s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits", headers=bearer(tok))
        assert r.status_code == 200
        served = {i["id"] for i in r.json()["value"]}
        assert served == set(_truth_ids(emu, "graph.directory_audits", retained_days=7))
        assert s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits", headers=bearer(tok)).status_code == 200
        r = s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits", headers=bearer(tok))
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "TooManyRequests"
        assert 1 <= int(r.headers["Retry-After"]) <= 10
        assert any(f["fault"] == "quota" for f in emu.faults())


def test_service_announcements_and_stall(tmp_path: Any) -> None:
    scenario = """
[tenant]
[graph]
issues = 3
messages = 5
[[graph.stall]]
start = "-1m"
end = "+1h"
delay = "0.2s"
[quota]
graph_requests_per_10s = 1
"""
    with running_emulator(scenario, tmp_path) as emu:
        s, tok = emu.session(), token(emu)
        started = time.monotonic()
        issues, _ = graph_all(s, f"{emu['graph']}/v1.0/admin/serviceAnnouncement/issues", tok)
        assert time.monotonic() - started >= 0.2  # the stall window holds every answer back
        assert len(issues) == 3 and all({"id", "status", "service", "posts"} <= i.keys() for i in issues)
        messages, pages = graph_all(s, f"{emu['graph']}/v1.0/admin/serviceAnnouncement/messages?$top=2", tok)
        assert pages == 3  # and four calls went through: announcements are not under the reports quota
        starts = [m["startDateTime"] for m in messages]
        assert starts == sorted(starts, reverse=True)
        assert len({m["id"] for m in messages}) == 5 and all(m["id"].startswith("MC") for m in messages)
        assert any(f["fault"] == "stall" for f in emu.faults())


def test_app_quota_across_tenants(tmp_path: Any) -> None:
    scenario = """
[[tenants]]
[[tenants]]
[streams."graph.directory_audits"]
records = 5
[quota]
graph_requests_per_10s = 2
graph_app_requests_per_10s = 3
"""
    with running_emulator(scenario, tmp_path) as emu:
        s = emu.session()
        toks = [token(emu, tenant=t) for t in emu["tenants"]]
        url = f"{emu['graph']}/v1.0/auditLogs/directoryAudits"
        codes = [s.get(url, headers=bearer(toks[i % 2])).status_code for i in range(4)]
        assert codes == [200, 200, 200, 429]  # 2 per tenant would allow 4; the app-wide 3 does not


@pytest.mark.parametrize(
    ("path", "op", "status"),
    [
        # provisioningobjectsummary-list.md: $filter (eq, contains, gt, lt) only
        ("provisioning", "ge", 400),
        ("provisioning", "le", 400),
        ("provisioning", "gt", 200),
        ("provisioning", "lt", 200),
        ("provisioning", "eq", 200),
        # directoryaudit-list.md: eq, ge, le, startswith
        ("directoryAudits", "ge", 200),
        ("directoryAudits", "gt", 400),
    ],
)
def test_time_operators_are_the_documented_ones_per_list(
    emu: EmulatorInfo, tok: str, path: str, op: str, status: int
) -> None:
    url = f"{emu['graph']}/v1.0/auditLogs/{path}?$filter=activityDateTime {op} 2020-01-01T00:00:00Z"
    r = emu.session().get(url, headers=bearer(tok))
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["code"] == "invalidRequest" and f"'{op}'" in r.json()["error"]["message"]


def test_provisioning_has_no_order_unless_asked(emu: EmulatorInfo, tok: str) -> None:
    """No documented order: served shuffled (the same way every time), paged without loss or repeat."""
    base = f"{emu['graph']}/v1.0/auditLogs/provisioning?$top=7&$filter=activityDateTime gt 2020-01-01T00:00:00Z"
    items, pages = graph_all(emu.session(), base, tok)
    again, _ = graph_all(emu.session(), base, tok)
    times = [i["activityDateTime"] for i in items]
    assert pages > 1 and [i["id"] for i in items] == [i["id"] for i in again]
    assert sorted(i["id"] for i in items) == sorted(_truth_ids(emu, "graph.provisioning"))
    assert times != sorted(times, reverse=True) and times != sorted(times)
    ordered, _ = graph_all(emu.session(), f"{base}&$orderby=activityDateTime desc", tok)
    ordered_times = [i["activityDateTime"] for i in ordered]
    assert ordered_times == sorted(ordered_times, reverse=True) and len(ordered) == len(items)
