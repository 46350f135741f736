"""The emulated Log Analytics endpoint: documented answers for what its KQL subset cannot run."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from emulator.siems import kql
from emulator.siems import loganalytics as la
from emulator.siems.siem_copy import SiemPlan, parse_plan
from tests.siem.fixtures import WORKSPACE, Scenario, make_tls, serve
from tests.siem.test_reconcile_emulated import END, START


def test_kql_parses_what_the_adapter_sends_and_rejects_the_rest() -> None:
    kql.Parser("SigninLogs | where Id in (\"a\", \"b\") | distinct Id")
    with pytest.raises(kql.KqlError) as exc:
        kql.run("SigninLogs | extend x = 1", lambda n: None, None, None, 0)
    assert exc.value.kind == "SemanticError"  # the table does not resolve first
    with pytest.raises(kql.KqlError) as exc:
        kql.tokenize("SigninLogs | where Id == \"a\" ; drop")
    assert exc.value.kind == "SyntaxError"


def test_scenario_plan_keys_are_checked() -> None:
    assert parse_plan({"max_rows": 10, "ingestion_delay": "2m"}).ingestion_delay == 120 * 10**7
    with pytest.raises(ValueError, match="max_rowz"):
        parse_plan({"max_rowz": 1})


async def test_errors_have_the_documented_shapes(tmp_path: Path) -> None:
    import aiohttp

    scn = Scenario(START, END, {"graph.signins.interactive": 50}, plan=SiemPlan(max_rows=10)).generate()
    tls = make_tls(tmp_path)
    async with serve(la.app(scn.copy(), token_ok=lambda t: t == "good"), tls) as url, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_client_ctx(tls.ca_file))) as http:
        path = f"{url}/v1/workspaces/{WORKSPACE}/query"
        ok = {"Authorization": "Bearer good"}

        async def post(query: str, headers: dict[str, str] = ok) -> tuple[int, dict]:  # type: ignore[type-arg]
            async with http.post(path, json={"query": query, "timespan": "2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"},
                                 headers=headers) as resp:
                return resp.status, orjson.loads(await resp.read())

        status, doc = await post("SigninLogs | where")
        assert status == 400 and doc["error"]["code"] == "BadArgumentError"
        assert doc["error"]["innererror"]["code"] == "SyntaxError"
        status, doc = await post("NoSuchTable | count")
        assert status == 400 and doc["error"]["innererror"]["code"] == "SemanticError"
        status, doc = await post("SigninLogs | where NoColumn == \"x\"")
        assert status == 400 and doc["error"]["innererror"]["code"] == "SemanticError"
        status, doc = await post("SigninLogs | count", {})
        assert status == 401 and doc["error"]["code"] == "AuthenticationFailed"
        status, doc = await post("SigninLogs | count", {"Authorization": "Bearer bad"})
        assert status == 403 and doc["error"]["code"] == "InvalidAuthenticationToken"
        status, doc = await post("SigninLogs | count")
        assert status == 200 and doc["tables"][0]["rows"] == [[50]] and "error" not in doc
        status, doc = await post("SigninLogs | project Id, UserPrincipalName, ResultType, TimeGenerated")
        assert status == 200 and len(doc["tables"][0]["rows"]) == 10  # cut at the row limit...
        assert doc["error"]["code"] == "PartialError"  # ...and said so
        status, doc = await post("SigninLogs | take 1")
        cols = [c["name"] for c in doc["tables"][0]["columns"]]
        want = {"TimeGenerated", "Id", "UserPrincipalName", "ResultType", "AADTenantId", "TenantId", "Type"}
        assert want <= set(cols)


def _client_ctx(ca: Path):  # type: ignore[no-untyped-def]
    import ssl

    return ssl.create_default_context(cafile=str(ca))
