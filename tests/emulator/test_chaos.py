"""Under every fault at once, a client that retries still collects exactly the truth: faults
delay and damage answers but never change what the API holds."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from tests.emulator.helpers import MANAGEMENT_SCOPE, bearer, mgmt_time, now, token
from tests.emulator_fixture import running_emulator

SCENARIO = """
seed = 21
start = "-20h"
end = "-1h"
[tenant]
[streams."graph.signins.interactive"]
records = 600
duplicate_fraction = 0.05
[streams."o365.sharepoint"]
records = 300
duplicate_fraction = 0.05
[management]
content_delay = ["1m", "10m"]
page_size = 10
[faults]
throttle = 0.05
server_error = 0.05
reset = 0.05
truncated = 0.05
html_error = 0.05
token_expiry = 0.05
empty_page = 0.1
retry_after = "0.1s"
[quota]
graph_requests_per_10s = 0
"""


def _get_json(
    s: requests.Session, url: str, tok: str
) -> tuple[Any, requests.structures.CaseInsensitiveDict[str]]:
    for _ in range(100):
        try:
            r = s.get(url, headers=bearer(tok), timeout=10)
            if r.status_code == 200:
                return r.json(), r.headers
        except (requests.RequestException, ValueError):
            pass
    raise AssertionError(f"no good answer from {url}")


def test_retrying_client_gets_exactly_the_truth(tmp_path: Path) -> None:
    with running_emulator(SCENARIO, tmp_path) as emu:
        s = emu.session()
        tok = token(emu)
        url: str | None = f"{emu['graph']}/beta/auditLogs/signIns?$top=50"
        graph_ids: set[str] = set()
        while url:
            body, _ = _get_json(s, url, tok)
            graph_ids |= {i["id"] for i in body["value"]}
            url = body.get("@odata.nextLink")
        assert graph_ids == {t["id"] for t in emu.truth() if t["stream"] == "graph.signins.interactive"}

        mtok = token(emu, MANAGEMENT_SCOPE)
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        before = now()
        start = before - timedelta(hours=21)
        url = (
            f"{root}/subscriptions/content?contentType=Audit.SharePoint&startTime={mgmt_time(start)}"
            f"&endTime={mgmt_time(start + timedelta(hours=23))}"
        )
        mgmt_ids: set[str] = set()
        while url:
            blobs, headers = _get_json(s, url, mtok)
            for b in blobs:
                mgmt_ids |= {r["Id"] for r in _get_json(s, b["contentUri"], mtok)[0]}
            url = headers.get("NextPageUri")
        after = now()
        seen_by = {
            t["id"]: datetime.fromisoformat(t["visible_at"])
            for t in emu.truth()
            if t["stream"] == "o365.sharepoint"
        }
        assert {i for i, v in seen_by.items() if v <= before} <= mgmt_ids
        assert mgmt_ids <= {i for i, v in seen_by.items() if v <= after}
        kinds = {f["fault"] for f in emu.faults()}
        assert {"throttle", "server_error", "reset", "truncated", "html_error", "token_expiry"} <= kinds
