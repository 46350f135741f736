"""Graph security lists (`security/alerts_v2`, `security/incidents`): shapes, filters, paging, versions
over time, the Defender XDR quota and the permission error."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator.helpers import bearer, graph_all, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

SCENARIO = """
seed = 3
start = "-6h"
end = "-1m"
[tenant]
id = "22222222-2222-4222-8222-222222222222"
license = "p2"
[streams."graph.security_alerts"]
records = 80
late_fraction = 0.5
late_window = "10m"
late_delay = "4s"
[streams."graph.security_incidents"]
records = 12
[security]
update_fraction = 0.8
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("security")) as e:
        yield e


def _url(emu: EmulatorInfo, path: str, query: str = "") -> str:
    return f"{emu['graph']}/v1.0/security/{path}" + (f"?{query}" if query else "")


def test_alert_shape_paging_and_newest_first(emu: EmulatorInfo) -> None:
    tok, s = token(emu), emu.session()
    items, pages = graph_all(s, _url(emu, "alerts_v2", "$top=7"), tok)
    assert pages > 1 and len({a["id"] for a in items}) == len(items)
    first = items[0]
    assert first["@odata.type"] == "#microsoft.graph.security.alert" and first["id"].startswith("da")
    assert {"providerAlertId", "incidentId", "status", "serviceSource", "createdDateTime", "lastUpdateDateTime",
            "evidence"} <= set(first)
    times = [a["lastUpdateDateTime"] for a in items]
    assert times == sorted(times, reverse=True), "most recent first"
    incidents, _ = graph_all(s, _url(emu, "incidents"), tok)
    assert incidents and all(i["@odata.type"] == "#microsoft.graph.security.incident" for i in incidents)


def test_filters_on_update_and_creation_time(emu: EmulatorInfo) -> None:
    tok, s = token(emu), emu.session()
    everything, _ = graph_all(s, _url(emu, "alerts_v2"), tok)
    cut = sorted(a["lastUpdateDateTime"] for a in everything)[len(everything) // 2][:19] + "Z"
    newer, _ = graph_all(s, _url(emu, "alerts_v2", f"$filter=lastUpdateDateTime ge {cut}"), tok)
    assert newer and all(a["lastUpdateDateTime"][:19] >= cut[:19] for a in newer) and len(newer) < len(everything)
    created, _ = graph_all(s, _url(emu, "alerts_v2", f"$filter=createdDateTime lt {cut}"), tok)
    assert created and all(a["createdDateTime"][:19] < cut[:19] for a in created)
    bad = s.get(_url(emu, "alerts_v2", "$filter=title eq 'x'"), headers=bearer(tok))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"
    assert s.get(_url(emu, "alerts_v2", "$top=0"), headers=bearer(tok)).status_code == 400


def test_a_late_update_replaces_the_served_version(emu: EmulatorInfo) -> None:
    tok, s = token(emu), emu.session()
    truth = [t for t in emu.truth() if t["stream"] == "graph.security_alerts"]
    replaced = {t["id"] for t in truth if t.get("superseded_at")}
    assert replaced
    time.sleep(5)  # past late_delay
    served, _ = graph_all(s, _url(emu, "alerts_v2"), tok)
    keys = {f"{a['id']}@{a['lastUpdateDateTime']}" for a in served}
    assert not keys & replaced, "a replaced version is no longer served"
    assert {k.split("@")[0] for k in replaced} <= {a["id"] for a in served}, "its alert is, as its new version"


def test_quota_answers_429_with_retry_after(emu: EmulatorInfo) -> None:
    tok, s = token(emu), emu.session()
    codes = [s.get(_url(emu, "incidents", "$top=1"), headers=bearer(tok)) for _ in range(60)]
    throttled = [r for r in codes if r.status_code == 429]
    assert throttled and int(throttled[0].headers["Retry-After"]) >= 1
    assert throttled[0].json()["error"]["code"] == "TooManyRequests"


def test_missing_permission_is_403(tmp_path: Path) -> None:
    with running_emulator(SCENARIO + '\npermission = "missing"\n', tmp_path) as e:
        r = e.session().get(_url(e, "alerts_v2"), headers=bearer(token(e)))
        assert r.status_code == 403 and "SecurityAlert.Read.All" in r.json()["error"]["message"]
