"""Fault injection on the data APIs, each kind forced with probability 1 (login is never faulted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from aiohttp.test_utils import make_mocked_request

from emulator.microsoft.graph_paging import encode_cursor, shuffle_key
from emulator.microsoft.graph_query import covers
from tests.emulator.helpers import MANAGEMENT_SCOPE, bearer, graph_all, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

BASE = """
seed = 5
start = "-2h"
end = "-1h"
[tenant]
id = "33333333-3333-4333-8333-333333333333"
[streams."graph.directory_audits"]
records = 300
[streams."o365.general"]
records = 50
[management]
content_delay = ["1m", "2m"]
[quota]
graph_requests_per_10s = 0
[faults]
"""


def _urls(emu: EmulatorInfo) -> tuple[str, str]:
    graph = f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$top=50"
    mgmt = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed/subscriptions/list"
    return graph, mgmt


def _run(kind: str, tmp_path: Path) -> tuple[EmulatorInfo, list[requests.Response | Exception]]:
    results: list[requests.Response | Exception] = []
    with running_emulator(BASE + f"{kind} = 1.0\n", tmp_path) as emu:
        s = emu.session()
        graph, mgmt = _urls(emu)
        for url, scope in ((graph, None), (mgmt, MANAGEMENT_SCOPE)):
            tok = token(emu, scope) if scope else token(emu)  # login is never faulted
            try:
                results.append(s.get(url, headers=bearer(tok), timeout=10))
            except requests.RequestException as exc:
                results.append(exc)
    return emu, results


def _response(item: requests.Response | Exception) -> requests.Response:
    assert isinstance(item, requests.Response), item
    return item


def test_throttle(tmp_path: Path) -> None:
    emu, (g, m) = _run("throttle", tmp_path)
    g, m = _response(g), _response(m)
    assert g.status_code == 429 and g.json()["error"]["code"] == "TooManyRequests"
    assert g.json()["error"]["innerError"]["status"] == "429"
    assert float(g.headers["Retry-After"]) >= 1
    assert m.status_code == 403 and m.json()["error"]["code"] == "AF429"
    assert "Retry-After" not in m.headers
    assert [f["fault"] for f in emu.faults()] == ["throttle", "throttle"]


def test_server_error(tmp_path: Path) -> None:
    _, (g, m) = _run("server_error", tmp_path)
    g, m = _response(g), _response(m)
    assert g.status_code in (500, 502, 503, 504) and "code" in g.json()["error"]
    assert m.status_code in (500, 502, 503, 504) and m.json()["error"]["code"] == "AF50000"


def test_html_error(tmp_path: Path) -> None:
    _, results = _run("html_error", tmp_path)
    for r in map(_response, results):
        assert r.status_code >= 500 and r.headers["Content-Type"].startswith("text/html")
        assert r.text.lstrip().startswith("<!DOCTYPE html>")


def test_token_expiry(tmp_path: Path) -> None:
    _, (g, m) = _run("token_expiry", tmp_path)
    g, m = _response(g), _response(m)
    assert g.status_code == 401 and g.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert m.status_code == 401 and "Authorization has been denied" in m.json()["Message"]


def test_reset_drops_the_connection(tmp_path: Path) -> None:
    emu, results = _run("reset", tmp_path)
    for item in results:
        assert isinstance(item, requests.ConnectionError | requests.exceptions.ChunkedEncodingError), item
    assert {f["fault"] for f in emu.faults()} == {"reset"}


def test_truncated_body(tmp_path: Path) -> None:
    _, results = _run("truncated", tmp_path)
    for item in results:
        if isinstance(item, Exception):
            assert isinstance(item, requests.ConnectionError | requests.exceptions.ChunkedEncodingError)
            continue
        with pytest.raises(ValueError):
            item.json()


def test_empty_pages_still_lead_to_everything(tmp_path: Path) -> None:
    scenario = BASE + "empty_page = 0.5\n"
    with running_emulator(scenario, tmp_path) as emu:
        s, tok = emu.session(), token(emu)
        graph, _ = _urls(emu)
        items, pages = graph_all(s, graph, tok)
        truth = {t["id"] for t in emu.truth() if t["stream"] == "graph.directory_audits"}
        assert {i["id"] for i in items} == truth
        assert pages > len(truth) // 50 + 1
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        mtok = token(emu, MANAGEMENT_SCOPE)
        empty_with_next = 0
        for _ in range(10):
            r = s.get(f"{root}/subscriptions/content?contentType=Audit.General", headers=bearer(mtok))
            if r.status_code == 200 and r.json() == [] and "NextPageUri" in r.headers:
                empty_with_next += 1
        assert empty_with_next > 0
        assert any(f["fault"] == "empty_page" for f in emu.faults())


def test_licence_error_on_graph_reports_only(tmp_path: Path) -> None:
    """Premium tenants get the free tenant's 403 now and then on report APIs (microsoft-graph-docs#14120,
    microsoft-graph-docs-contrib#3759); the Management API draws it as no fault."""
    emu, (g, m) = _run("licence_error", tmp_path)
    g, m = _response(g), _response(m)
    assert g.status_code == 403
    assert g.json()["error"]["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert m.status_code == 200
    assert [f["fault"] for f in emu.faults()] == ["licence_error"]


def test_a_fault_on_a_provisioning_next_page_is_logged_with_the_filter_span() -> None:
    """Provisioning is served in shuffle order: its `$skiptoken` holds a place in that order, not a
    time. The fault log read it as a time (a date past year 9999) and the faulted request became a
    500 no fault was logged for."""
    rid = "ea14899c-02da-471c-9c8c-c1fdf14e5e50"
    query = (f"$filter=activityDateTime gt 2026-01-01T00:00:00Z and activityDateTime lt 2026-01-01T04:00:00Z"
             f"&$top=50&$skiptoken={encode_cursor((shuffle_key(rid), rid, 0))}")
    request = make_mocked_request("GET", f"/v1.0/auditLogs/provisioning?{query}",
                                  match_info={"version": "v1.0", "path": "auditLogs/provisioning"})
    span = covers(request)
    assert span["streams"] == ["graph.provisioning"]
    assert (span["newest"], span["oldest"]) == ("2026-01-01T03:59:59.9999999Z", "2026-01-01T00:00:00.0000001Z")
