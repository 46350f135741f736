"""Entra's summarized sign-ins in the emulator: counts derived from the same world (upstream-lost
events included), grouped as documented, and the documented request form only."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from emulator.microsoft import summarized
from emulator.world.clock import TICKS_PER_SECOND
from tests.emulator.helpers import bearer, graph_all, token
from tests.emulator.test_fanout import ORIGIN, TENANT, build
from tests.emulator_fixture import running_emulator

NONINT = "graph.signins.noninteractive"
GAP = f'[[upstream.gaps]]\nstream = "{NONINT}"\nstart = "-12h"\nend = "-10h"\n'


def test_summary_counts_every_event_including_those_the_list_lost() -> None:
    _, data = build({NONINT: 300}, GAP)
    sd = data.get(TENANT, NONINT)
    assert sd is not None and sd.lost, "the gap must take records from the list"
    rows = summarized.rows(sd, "h1", ORIGIN, TENANT)
    per_hour: Counter[str] = Counter()
    for r in rows:
        per_hour[r["aggregationDateTime"]] += r["signInCount"]
        assert r["firstSignInDateTime"] >= r["aggregationDateTime"]
    assert sum(per_hour.values()) == len(sd.entries) + len(sd.lost)
    keys = [(r["aggregationDateTime"], r["userPrincipalName"], r["appId"], r["ipAddress"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per (window, user, app, IP)
    day = summarized.rows(sd, "d1", ORIGIN, TENANT)
    assert sum(r["signInCount"] for r in day) == sum(per_hour.values())
    assert all(r["aggregationDateTime"].endswith("T00:00:00Z") for r in day)
    assert summarized.rows(sd, "h1", ORIGIN - 30 * 3600 * TICKS_PER_SECOND, TENANT) == []  # nothing yet


@pytest.mark.parametrize(("path", "parsed"), [
    ("auditlogs/getsummarizednoninteractivesignins(aggregationwindow='h6')",
     ("getsummarizednoninteractivesignins", "h6")),
    ("auditlogs/getsummarizedmsisignins(aggregationwindow=d1)", ("", "aggregationwindow=d1")),
    ("auditlogs/getsummarizedinteractivesignins(aggregationwindow='d1')", None),
    ("auditlogs/signins", None),
])
def test_parse_call(path: str, parsed: Any) -> None:
    assert summarized.parse_call(path) == parsed


def test_served_over_graph_beta_only_in_the_documented_form(tmp_path: Any) -> None:
    scn = f'seed = 3\nstart = "-6h"\nend = "-10m"\n[tenant]\n[streams."{NONINT}"]\nrecords = 120\n' \
          '[quota]\ngraph_requests_per_10s = 0\n'
    with running_emulator(scn, tmp_path) as emu:
        tok = token(emu)
        s, base = emu.session(), emu["graph"]
        items, _ = graph_all(s, f"{base}/beta/auditLogs/getSummarizedNonInteractiveSignIns(aggregationWindow='h1')",
                             tok)
        served = [t for t in emu.truth() if t["stream"] == NONINT]
        assert sum(i["signInCount"] for i in items) == len(served)
        for bad in ("getSummarizedNonInteractiveSignIns(aggregationWindow='h2')",
                    "getSummarizedNonInteractiveSignIns(aggregationWindow='h1')?$filter=appId eq 'x'"):
            assert s.get(f"{base}/beta/auditLogs/{bad}", headers=bearer(tok)).status_code == 400, bad
        v1 = s.get(f"{base}/v1.0/auditLogs/getSummarizedNonInteractiveSignIns(aggregationWindow='h1')",
                   headers=bearer(tok))
        assert v1.status_code == 400
        assert s.get(f"{base}/beta/auditLogs/getSummarizedMsiSignIns(aggregationWindow='d1')").status_code == 401
        empty = s.get(f"{base}/beta/auditLogs/getSummarizedMsiSignIns(aggregationWindow='d1')", headers=bearer(tok))
        assert empty.status_code == 200 and empty.json()["value"] == []


def test_pages_follow_next_link_to_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson
    from aiohttp.test_utils import make_mocked_request

    _, data = build({NONINT: 200})
    sd = data.get(TENANT, NONINT)
    monkeypatch.setattr(summarized, "PAGE", 7)
    monkeypatch.setattr(summarized, "now_ticks", lambda: ORIGIN)
    url, skip, seen = "/beta/auditLogs/getSummarizedNonInteractiveSignIns(aggregationWindow='h1')", 0, []
    while True:
        body = orjson.loads(summarized.respond(make_mocked_request("GET", url), sd, "h1", TENANT, skip).body)
        seen += body["value"]
        if "@odata.nextLink" not in body:
            break
        assert len(body["value"]) == 7
        skip = int(body["@odata.nextLink"].rsplit("$skiptoken=", 1)[1])
    assert seen == summarized.rows(sd, "h1", ORIGIN, TENANT) and len(seen) > 7
