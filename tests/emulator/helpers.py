"""Small clients used by the emulator tests: real msal for tokens, plain requests for the APIs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msal
import requests

from tests.emulator_fixture import EmulatorInfo

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MANAGEMENT_SCOPE = "https://manage.office.com/.default"


def token(
    emu: EmulatorInfo, scope: str = GRAPH_SCOPE, credential: Any = None, tenant: str | None = None
) -> str:
    app = msal.ConfidentialClientApplication(
        emu["client_id"],
        client_credential=credential or emu["client_secret"],
        authority=f"{emu['login']}/{tenant or emu['tenant_id']}",
        http_client=emu.session(),
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[scope])
    assert "access_token" in result, result
    return str(result["access_token"])


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def graph_all(s: requests.Session, url: str, tok: str) -> tuple[list[dict[str, Any]], int]:
    """Follow @odata.nextLink to the end; returns (items, pages)."""
    items: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        r = s.get(next_url, headers=bearer(tok))
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["value"]
        pages += 1
        next_url = body.get("@odata.nextLink")
    return items, pages


def mgmt_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S")


def now() -> datetime:
    return datetime.now(UTC)


def hours_ago(h: float) -> datetime:
    return now() - timedelta(hours=h)
