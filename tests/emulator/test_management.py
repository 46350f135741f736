"""Office 365 Management Activity API: subscriptions, listing rules and AF codes, paging, blobs,
expiry, unavailable blobs and the per-tenant quota (protocols.md §2)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.helpers import MANAGEMENT_SCOPE, bearer, hours_ago, mgmt_time, now, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

TENANT = "44444444-4444-4444-8444-444444444444"
SCENARIO = f"""
seed = 9
start = "-30h"
end = "-20m"
[tenant]
id = "{TENANT}"
[streams."o365.exchange"]
records = 1500
duplicate_fraction = 0.05
[streams."o365.sharepoint"]
records = 30
[streams."o365.dlp_all"]
records = 10
[management]
page_size = 20
blob_records = 40
content_delay = ["1m", "15m"]
straggler_fraction = 0.05
straggler_delay = "3h"
subscribed = ["Audit.Exchange", "Audit.SharePoint"]
disabled = ["Audit.General"]
start_interval = "0s"  # the 15-minute start interval has its own test (tests/e2e/test_management_fidelity.py)
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("mgmt")) as e:
        yield e


@pytest.fixture(scope="module")
def tok(emu: EmulatorInfo) -> str:
    return token(emu, MANAGEMENT_SCOPE)


def _root(emu: EmulatorInfo) -> str:
    return f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"


def _list_all(
    emu: EmulatorInfo, tok: str, ct: str, start: datetime, end: datetime
) -> tuple[list[dict[str, Any]], int]:
    url: str | None = (
        f"{_root(emu)}/subscriptions/content?contentType={ct}&startTime={mgmt_time(start)}"
        f"&endTime={mgmt_time(end)}&PublisherIdentifier={emu['tenant_id']}"
    )
    blobs, pages = [], 0
    s = emu.session()
    while url:
        r = s.get(url, headers=bearer(tok))
        assert r.status_code == 200, r.text
        blobs += r.json()
        pages += 1
        url = r.headers.get("NextPageUri")
        if url:
            assert "/api/v1/" in url and "nextPage=" in url
    return blobs, pages


def _error(r: Any) -> str:
    return str(r.json()["error"]["code"])


def test_subscriptions(emu: EmulatorInfo, tok: str) -> None:
    s, root = emu.session(), _root(emu)
    listed = {
        i["contentType"]: i["status"] for i in s.get(f"{root}/subscriptions/list", headers=bearer(tok)).json()
    }
    assert listed == {"Audit.Exchange": "enabled", "Audit.SharePoint": "enabled", "Audit.General": "disabled"}
    r = s.post(f"{root}/subscriptions/start?contentType=Audit.Exchange", headers=bearer(tok))
    assert r.status_code == 400 and r.json() == {
        "error": {"code": "AF20024", "message": "The subscription is already enabled. No property change."}
    }
    r = s.post(f"{root}/subscriptions/start?contentType=DLP.All", headers=bearer(tok))
    assert r.status_code == 200 and r.json() == {
        "contentType": "DLP.All",
        "status": "enabled",
        "webhook": None,
    }
    assert (
        _error(s.post(f"{root}/subscriptions/start?contentType=Audit.General", headers=bearer(tok)))
        == "AF20023"
    )
    assert (
        _error(s.post(f"{root}/subscriptions/start?contentType=Audit.Nope", headers=bearer(tok))) == "AF20020"
    )
    r = s.post(f"{root}/subscriptions/stop?contentType=Audit.SharePoint", headers=bearer(tok))
    assert r.status_code == 200 and r.content == b""
    r = s.get(f"{root}/subscriptions/content?contentType=Audit.SharePoint", headers=bearer(tok))
    assert _error(r) == "AF20022"
    assert (
        s.post(f"{root}/subscriptions/start?contentType=Audit.SharePoint", headers=bearer(tok)).status_code
        == 200
    )
    assert (
        _error(s.get(f"{root}/subscriptions/content?contentType=Audit.General", headers=bearer(tok)))
        == "AF20023"
    )


def test_listing_and_blobs_equal_truth(emu: EmulatorInfo, tok: str) -> None:
    s = emu.session()
    before = now()
    end = before + timedelta(minutes=1)
    blobs = _list_all(emu, tok, "Audit.Exchange", end - timedelta(hours=24), end)[0]
    blobs += _list_all(emu, tok, "Audit.Exchange", end - timedelta(hours=31), end - timedelta(hours=24))[0]
    assert blobs
    first = blobs[0]
    assert list(first) == ["contentType", "contentId", "contentUri", "contentCreated", "contentExpiration"]
    created = datetime.fromisoformat(first["contentCreated"])
    assert datetime.fromisoformat(first["contentExpiration"]) - created == timedelta(days=7)
    assert first["contentCreated"].endswith("Z") and len(first["contentCreated"]) == 24
    records: list[dict[str, Any]] = []
    for b in blobs:
        r = s.get(b["contentUri"] + f"?PublisherIdentifier={emu['tenant_id']}", headers=bearer(tok))
        assert r.status_code == 200
        records += r.json()
    ids = [r["Id"] for r in records]
    assert len(ids) > len(set(ids))  # duplicates within and across blobs
    truth = {t["id"]: t for t in emu.truth() if t["stream"] == "o365.exchange"}
    seen_by = {i: datetime.fromisoformat(t["visible_at"]) for i, t in truth.items()}
    assert {i for i, v in seen_by.items() if v <= before} <= set(ids)
    assert set(ids) <= {i for i, v in seen_by.items() if v <= now()}
    rec = records[0]
    assert rec["Workload"] == "Exchange" and rec["RecordType"] in (1, 50)
    assert len(rec["CreationTime"]) == 19 and "Z" not in rec["CreationTime"]
    # visible_at is the first blob's contentCreated, and a blob never precedes its events
    by_blob = {b["contentId"]: datetime.fromisoformat(b["contentCreated"]) for b in blobs}
    for t in truth.values():
        if t["content_id"] in by_blob:
            assert datetime.fromisoformat(t["visible_at"]) == by_blob[t["content_id"]]
            assert datetime.fromisoformat(t["event_time"]) < by_blob[t["content_id"]]


def test_listing_is_inclusive_start_exclusive_end_and_paged(emu: EmulatorInfo, tok: str) -> None:
    blobs, pages = _list_all(emu, tok, "Audit.Exchange", hours_ago(23), hours_ago(1))
    assert pages > 1
    times = [b["contentCreated"] for b in blobs]
    assert times == sorted(times)
    pivot = datetime.fromisoformat(times[5]).replace(microsecond=0)
    with_pivot = [b for b in blobs if datetime.fromisoformat(b["contentCreated"]) >= pivot]
    got, _ = _list_all(emu, tok, "Audit.Exchange", pivot, hours_ago(1))
    assert [b["contentId"] for b in got] == [b["contentId"] for b in with_pivot]
    before, _ = _list_all(emu, tok, "Audit.Exchange", hours_ago(23), pivot)
    assert all(datetime.fromisoformat(b["contentCreated"]) < pivot for b in before)


def test_a_later_blob_can_hold_older_events(emu: EmulatorInfo) -> None:
    truth = [t for t in emu.truth() if t["stream"] == "o365.exchange"]
    delays = [
        datetime.fromisoformat(t["visible_at"]) - datetime.fromisoformat(t["event_time"]) for t in truth
    ]
    assert max(delays) > timedelta(minutes=20)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("contentType=Audit.Exchange&startTime={h2}", "AF20030"),
        ("contentType=Audit.Exchange&startTime={h30}&endTime={h2}", "AF20030"),
        ("contentType=Audit.Exchange&startTime={d8}&endTime={d7}", "AF20030"),
        ("contentType=Audit.Exchange&startTime={h1}&endTime={h2}", "AF20055"),
        ("contentType=Audit.Exchange&startTime={h2}&endTime={h1}&nextPage=garbage", "AF20031"),
        ("startTime={h2}&endTime={h1}", "AF20001"),
        ("contentType=Audit.Exchange&startTime=yesterday&endTime={h1}", "AF20002"),
    ],
)
def test_listing_rules(emu: EmulatorInfo, tok: str, query: str, code: str) -> None:
    values = {
        "h1": mgmt_time(hours_ago(1)),
        "h2": mgmt_time(hours_ago(2)),
        "h30": mgmt_time(hours_ago(30)),
        "d8": mgmt_time(hours_ago(8 * 24)),
        "d7": mgmt_time(hours_ago(7 * 24 + 20)),
    }
    r = emu.session().get(f"{_root(emu)}/subscriptions/content?{query.format(**values)}", headers=bearer(tok))
    assert r.status_code == 400 and _error(r) == code


def test_documented_time_formats(emu: EmulatorInfo, tok: str) -> None:
    day = (now() - timedelta(days=1)).strftime("%Y-%m-%d")
    today = now().strftime("%Y-%m-%d")
    for start, end in ((day, today), (f"{day}T10:00", f"{today}T09:00")):
        url = f"{_root(emu)}/subscriptions/content?contenttype=Audit.Exchange&starttime={start}&endtime={end}"
        assert emu.session().get(url, headers=bearer(tok)).status_code == 200


def test_missing_blob_and_tenant_mismatch(emu: EmulatorInfo, tok: str) -> None:
    s = emu.session()
    r = s.get(
        f"{_root(emu)}/audit/20200101000000000000$20200101000000000000$audit_exchange$Audit_Exchange$na0047",
        headers=bearer(tok),
    )
    assert r.status_code == 404 and _error(r) == "AF20050"
    other = (
        f"{emu['management']}/api/v1.0/55555555-5555-4555-8555-555555555555/activity/feed/subscriptions/list"
    )
    assert _error(s.get(other, headers=bearer(tok))) == "AF20010"


def test_expired_and_unavailable_blobs(tmp_path: Path) -> None:
    scenario = """
seed = 2
start = "-168h"
end = "-167h59m57s"
[tenant]
[streams."o365.azure_active_directory"]
records = 6
[streams."o365.sharepoint"]
records = 6
[management]
content_delay = ["6s", "7s"]
blob_records = 100
straggler_fraction = 0.0
[[management.unavailable]]
stream = "o365.sharepoint"
after = "-169h"
"""
    with running_emulator(scenario, tmp_path) as emu:
        s, tok = emu.session(), token(emu, MANAGEMENT_SCOPE)
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        truth = emu.truth()
        gone = [t for t in truth if t["stream"] == "o365.sharepoint"]
        assert gone and all(t["available"] is False for t in gone)
        assert all(t["available"] is True for t in truth if t["stream"] == "o365.azure_active_directory")
        start = now() - timedelta(days=7) + timedelta(seconds=2)
        window = f"startTime={mgmt_time(start)}&endTime={mgmt_time(start + timedelta(hours=23))}"
        url = f"{root}/subscriptions/content?contentType=Audit.SharePoint&{window}"
        listed = s.get(url, headers=bearer(tok)).json()
        assert isinstance(listed, list), listed
        assert [b["contentId"] for b in listed] == [gone[0]["content_id"]]
        r = s.get(listed[0]["contentUri"], headers=bearer(tok))
        assert r.status_code == 404 and _error(r) == "AF20050"
        aad = next(t for t in truth if t["stream"] == "o365.azure_active_directory")
        aad_uri = f"{root}/audit/{aad['content_id']}"
        assert s.get(aad_uri, headers=bearer(tok)).status_code == 200
        expires = datetime.fromisoformat(listed[0]["contentExpiration"])
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
        r = s.get(listed[0]["contentUri"], headers=bearer(tok))
        assert r.status_code == 400 and _error(r) == "AF20051"
        assert any(f["fault"] == "unavailable_blob" for f in emu.faults())


def test_quota_is_af429_as_403(tmp_path: Path) -> None:
    scenario = """
[tenant]
[streams."o365.general"]
records = 5
[quota]
management_requests_per_minute = 3
"""
    with running_emulator(scenario, tmp_path) as emu:
        s, tok = emu.session(), token(emu, MANAGEMENT_SCOPE)
        url = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed/subscriptions/list"
        codes = [
            s.get(url + "?publisheridentifier=" + emu["tenant_id"], headers=bearer(tok)).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 403]
        r = s.get(url, headers=bearer(tok))
        assert r.json()["error"]["code"] == "AF429" and "Retry-After" not in r.headers
