"""A small, independent "third-party collector" for the impersonation tests: plain `requests`, the
real Microsoft host names, no code from this project. Run by `agent emulator exec`, it reads its
credentials from EMULATOR_* and trusts the emulator CA only through REQUESTS_CA_BUNDLE.

    python collector_client.py RECORDS.ndjson PLAN.json

It skips on purpose every 10th sign-in and one whole Management blob, writes one record twice and
one record that does not exist, and gives up on any blob whose fetch fails (listings are retried).
PLAN.json says what it skipped, duplicated, invented and lost, for the test to compare.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

TENANT = os.environ["EMULATOR_TENANT_ID"]
CLIENT = os.environ["EMULATOR_CLIENT_ID"]
SECRET = os.environ["EMULATOR_CLIENT_SECRET"]
LOGIN = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com"
MANAGE = "https://manage.office.com"
HEADERS = {"User-Agent": "independent-test-collector/1.0"}


def token_v1(resource: str) -> str:
    r = requests.post(
        f"{LOGIN}/{TENANT}/oauth2/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET, "resource": resource},
        headers=HEADERS,
        timeout=30,
    )
    r.raise_for_status()
    assert r.json()["resource"] == resource
    return str(r.json()["access_token"])


def token_v2(scope: str) -> str:
    r = requests.post(
        f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET, "scope": scope},
        headers=HEADERS,
        timeout=30,
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def get(url: str, tok: str, retry: bool) -> requests.Response | None:
    """GET with the token; listings are retried through injected faults, blobs are not."""
    for _ in range(30 if retry else 1):
        try:
            r = requests.get(url, headers={**HEADERS, "Authorization": f"Bearer {tok}"}, timeout=30)
            if r.status_code == 200:
                r.json()  # a truncated body counts as a failure
                return r
            if r.status_code == 429:  # Graph's documented quota: wait as told, then ask again
                time.sleep(min(float(r.headers.get("Retry-After", "1")), 10.0))
        except (requests.RequestException, ValueError):
            pass
    if retry:
        raise SystemExit(f"gave up on {url}")
    return None


def main() -> None:
    records_path, plan_path = sys.argv[1], sys.argv[2]
    for host in ("login.microsoftonline.com", "graph.microsoft.com", "manage.office.com"):
        assert socket.gethostbyname(host) == "127.0.0.1", host
    if shutil.which("curl"):
        doc = subprocess.run(
            ["curl", "-sS", "--fail", f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration"],
            capture_output=True,
            check=True,
        )
        assert json.loads(doc.stdout)["token_endpoint"] == f"{LOGIN}/{TENANT}/oauth2/v2.0/token"
    plan: dict[str, Any] = {"skipped_ids": [], "skipped_blobs": [], "failed_blobs": [], "links": []}
    out = open(records_path, "w")  # noqa: SIM115
    written: list[dict[str, Any]] = []

    def write(rec: dict[str, Any]) -> None:
        out.write(json.dumps(rec) + "\n")
        written.append(rec)

    graph_v1 = token_v1(GRAPH)
    graph_v2 = token_v2(f"{GRAPH}/.default")
    manage_v1 = token_v1(MANAGE)
    manage_v2 = token_v2(f"{MANAGE}/.default")

    # Graph: beta sign-ins of two event types, paged through @odata.nextLink (v1 token).
    url: str | None = (
        f"{GRAPH}/beta/auditLogs/signIns?$filter=signInEventTypes/any(t: t eq 'interactiveUser' "
        "or t eq 'nonInteractiveUser')&$top=50&someUndocumentedParameter=1"
    )
    n = 0
    while url:
        r = get(url, graph_v1, retry=True)
        assert r is not None
        body = r.json()
        for rec in body["value"]:
            n += 1
            if n % 10 == 0:
                plan["skipped_ids"].append(rec["id"])
                continue
            write(rec)
        url = body.get("@odata.nextLink")
        if url:
            plan["links"].append(url)
    # directoryAudits with the v2 token, one page only: proves v2 works for Graph; not written.
    r = get(f"{GRAPH}/v1.0/auditLogs/directoryAudits?$top=5", graph_v2, retry=True)
    assert r is not None

    # Management: list a day of Audit.Exchange content (NextPageUri), fetch every blob but one (v2 token).
    requests.post(
        f"{MANAGE}/api/v1.0/{TENANT}/activity/feed/subscriptions/start?contentType=Audit.Exchange",
        headers={**HEADERS, "Authorization": f"Bearer {manage_v1}"},
        timeout=30,
    )  # already running: AF20024, fine either way
    end = datetime.now(UTC)
    start = end - timedelta(hours=24)
    fmt = "%Y-%m-%dT%H:%M:%S"
    url = (
        f"{MANAGE}/api/v1.0/{TENANT}/activity/feed/subscriptions/content?contentType=Audit.Exchange"
        f"&startTime={start.strftime(fmt)}&endTime={end.strftime(fmt)}&PublisherIdentifier={TENANT}"
    )
    blobs: list[dict[str, Any]] = []
    while url:
        r = get(url, manage_v2, retry=True)
        assert r is not None
        blobs += r.json()
        url = r.headers.get("NextPageUri")
        if url:
            plan["links"].append(url)
    for i, blob in enumerate(blobs):
        plan["links"].append(blob["contentUri"])
        if i == 3:
            plan["skipped_blobs"].append(blob["contentId"])
            continue
        r = get(blob["contentUri"] + f"?PublisherIdentifier={TENANT}", manage_v2, retry=False)
        if r is None:
            plan["failed_blobs"].append(blob["contentId"])
            continue
        for rec in r.json():
            write(rec)

    # One record written twice, one that never existed.
    write(written[0])
    plan["duplicated_id"] = written[0].get("id") or written[0].get("Id")
    write({"id": "00000000-0000-4000-8000-00000000beef", "createdDateTime": end.isoformat()})
    plan["invented_id"] = "00000000-0000-4000-8000-00000000beef"
    out.close()
    with open(plan_path, "w") as f:
        json.dump(plan, f)


if __name__ == "__main__":
    main()
