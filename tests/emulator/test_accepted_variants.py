"""Every request form the documentation allows is accepted; only what the real service refuses is
refused. Each test is a small client written from the documentation (plain `requests`, real msal):
Management listing time formats, Authorization scheme case on every service, Graph `$orderby` and
query option spellings, MSAL instance discovery, tokens for resources no emulated API serves, and
client_secret_basic.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msal
import pytest
import requests

from tests.emulator.helpers import MANAGEMENT_SCOPE, graph_all, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

TENANT = "7a7a7a7a-1111-4222-8333-444444444444"
SCENARIO = f"""
seed = 21
start = "-20h"
end = "-30m"
[tenant]
id = "{TENANT}"
license = "p2"
[streams."graph.signins.interactive"]
records = 120
duplicate_fraction = 0.05
[streams."graph.signins.noninteractive"]
records = 40
[streams."graph.directory_audits"]
records = 60
[streams."o365.exchange"]
records = 200
[management]
page_size = 5
blob_records = 10
content_delay = ["1m", "5m"]
straggler_fraction = 0.0
[quota]
graph_requests_per_10s = 0
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("variants")) as e:
        yield e


@pytest.fixture(scope="module")
def graph_tok(emu: EmulatorInfo) -> str:
    return token(emu)


@pytest.fixture(scope="module")
def mgmt_tok(emu: EmulatorInfo) -> str:
    return token(emu, MANAGEMENT_SCOPE)


# -- 1. Management Activity listing times ---------------------------------------------------------


def _listing(emu: EmulatorInfo, tok: str, start: str, end: str, raw: bool = False) -> requests.Response:
    """One listing page; `raw` puts the times into the URL unencoded (a '+' stays a '+')."""
    url = f"{emu['management']}/api/v1.0/{TENANT}/activity/feed/subscriptions/content"
    s = emu.session()
    if raw:
        return s.get(f"{url}?contentType=Audit.Exchange&startTime={start}&endTime={end}", headers=_auth(tok))
    params = {"contentType": "Audit.Exchange", "startTime": start, "endTime": end}
    return s.get(url, params=params, headers=_auth(tok))


def _blob_ids(emu: EmulatorInfo, tok: str, start: str, end: str, raw: bool = False) -> list[str]:
    r = _listing(emu, tok, start, end, raw)
    assert r.status_code == 200, (start, r.text)
    ids = [b["contentId"] for b in r.json()]
    s = emu.session()
    while "NextPageUri" in r.headers:  # the next page must keep working with the same time form
        r = s.get(r.headers["NextPageUri"], headers=_auth(tok))
        assert r.status_code == 200, r.text
        ids += [b["contentId"] for b in r.json()]
    return ids


def _auth(tok: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {tok}"}


def _window() -> tuple[datetime, datetime]:
    end = datetime.now(UTC).replace(microsecond=836454)
    return end - timedelta(hours=20), end


def test_management_accepts_every_documented_and_real_time_form(emu: EmulatorInfo, mgmt_tok: str) -> None:
    start, end = _window()
    # Documented: YYYY-MM-DDTHH:MM:SS (UTC). The same instant in the forms real clients send.
    expected = _blob_ids(emu, mgmt_tok, start.strftime("%Y-%m-%dT%H:%M:%S"), end.strftime("%Y-%m-%dT%H:%M:%S"))
    assert expected
    s0, e0 = start.replace(microsecond=0), end.replace(microsecond=0)
    forms = {
        "Z": (f"{s0:%Y-%m-%dT%H:%M:%S}Z", f"{e0:%Y-%m-%dT%H:%M:%S}Z"),
        "js ms Z": (f"{s0:%Y-%m-%dT%H:%M:%S}.000Z", f"{e0:%Y-%m-%dT%H:%M:%S}.000Z"),
        "python isoformat": (s0.isoformat(), e0.isoformat()),
        ".NET 7 digits": (f"{s0:%Y-%m-%dT%H:%M:%S}.0000000Z", f"{e0:%Y-%m-%dT%H:%M:%S}.0000000Z"),
        "space separator": (f"{s0:%Y-%m-%d %H:%M:%S}", f"{e0:%Y-%m-%d %H:%M:%S}"),
        "+0200": (
            (s0 + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+0200"),
            (e0 + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S+02:00"),
        ),
        "-05:30": (
            (s0 - timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S-05:30"),
            (e0 - timedelta(hours=5, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S-05:30"),
        ),
    }
    for name, (lo, hi) in forms.items():
        assert _blob_ids(emu, mgmt_tok, lo, hi) == expected, name
    # Python isoformat with microseconds, as a connector sends it: encoded, and unencoded ('+' raw).
    lo, hi = start.isoformat(), end.isoformat()
    assert lo.endswith(".836454+00:00")
    assert _blob_ids(emu, mgmt_tok, lo, hi) == _blob_ids(emu, mgmt_tok, lo, hi, raw=True)
    assert set(_blob_ids(emu, mgmt_tok, lo, hi)) <= set(expected) | set(
        _blob_ids(emu, mgmt_tok, f"{s0:%Y-%m-%dT%H:%M}", f"{e0 + timedelta(minutes=1):%Y-%m-%dT%H:%M}")
    )


def test_management_date_only_and_minutes(emu: EmulatorInfo, mgmt_tok: str) -> None:
    today = datetime.now(UTC)
    r = _listing(emu, mgmt_tok, f"{today:%Y-%m-%d}", f"{today + timedelta(days=1):%Y-%m-%d}")
    assert r.status_code == 200, r.text
    r = _listing(emu, mgmt_tok, f"{today - timedelta(hours=3):%Y-%m-%dT%H:%M}", f"{today:%Y-%m-%dT%H:%M}")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "bad",
    ["yesterday", "1733545380", "2026-13-01T00:00:00", "2026-12-07T25:00", "2026-12-7", "07/12/2026",
     "2026-12-07T04:23:00+15:00"],
)  # fmt: skip
def test_management_refuses_what_is_not_a_time(emu: EmulatorInfo, mgmt_tok: str, bad: str) -> None:
    end = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    r = _listing(emu, mgmt_tok, bad, end)
    assert r.status_code == 400 and r.json()["error"]["code"] == "AF20002", r.text


# -- 2. Authorization scheme case ----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_bearer_scheme_is_case_insensitive(emu: EmulatorInfo, graph_tok: str, mgmt_tok: str, scheme: str) -> None:
    s = emu.session()
    r = s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$top=1", headers=_auth(graph_tok, scheme))
    assert r.status_code == 200, r.text
    r = s.get(
        f"{emu['management']}/api/v1.0/{TENANT}/activity/feed/subscriptions/list", headers=_auth(mgmt_tok, scheme)
    )
    assert r.status_code == 200, r.text
    la = token(emu, "https://api.loganalytics.io/.default")
    r = s.get(
        f"{emu['loganalytics']}/v1/workspaces/{emu['workspace_id']}/query",
        params={"query": "SigninLogs | take 1"},
        headers=_auth(la, scheme),
    )
    assert r.status_code == 200, r.text
    r = s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$top=1", headers=_auth(graph_tok, f"{scheme}  "))
    assert r.status_code == 200, r.text  # more than one space after the scheme (RFC 9110: 1*SP)


def test_bearer_scheme_still_needs_a_valid_token(emu: EmulatorInfo, graph_tok: str) -> None:
    s = emu.session()
    for header in (f"Basic {graph_tok}", f"Bearer{graph_tok}", "bearer", f"bearer {graph_tok}x"):
        r = s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$top=1", headers={"Authorization": header})
        assert r.status_code == 401, header


def test_siem_schemes_are_case_insensitive(emu: EmulatorInfo) -> None:
    s = emu.session()
    for scheme in ("ApiKey", "apikey", "APIKEY"):
        r = s.post(f"{emu['elastic']}/_search", json={"size": 0}, headers=_auth(emu["elastic_api_key"], scheme))
        assert r.status_code != 401, (scheme, r.text)
    r = s.post(f"{emu['elastic']}/_search", json={"size": 0}, headers=_auth("wrong", "apikey"))
    assert r.status_code == 401
    channel = {"X-Splunk-Request-Channel": str(uuid.uuid4())}
    for scheme in ("Splunk", "splunk", "SPLUNK"):
        r = s.post(
            f"{emu['splunk_hec']}/services/collector/event",
            data=b'{"event": "x", "sourcetype": "variant-test", "index": "main"}',
            headers={**_auth(emu["splunk_hec_token"], scheme), **channel},
        )
        assert r.status_code == 200, (scheme, r.status_code, r.text)


# -- 3. Graph $orderby and option spellings --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [("beta/auditLogs/signIns", "createdDateTime"), ("v1.0/auditLogs/directoryAudits", "activityDateTime")],
)
def test_graph_orderby_asc_and_desc(emu: EmulatorInfo, graph_tok: str, path: str, field: str) -> None:
    base = f"{emu['graph']}/{path}"
    default, _ = graph_all(emu.session(), f"{base}?$top=7", graph_tok)
    desc, _ = graph_all(emu.session(), f"{base}?$top=7&$orderby={field} desc", graph_tok)
    asc, pages = graph_all(emu.session(), f"{base}?$top=7&$orderby={field} asc", graph_tok)
    bare, _ = graph_all(emu.session(), f"{base}?$top=7&$orderby={field}", graph_tok)  # OData: asc by default
    assert pages > 3
    assert [i["id"] for i in desc] == [i["id"] for i in default]
    times = [i[field] for i in asc]
    assert times == sorted(times) and len(asc) == len(desc)
    assert sorted(i["id"] for i in asc) == sorted(i["id"] for i in desc)  # duplicates served in both orders
    assert [i["id"] for i in bare] == [i["id"] for i in asc]
    upper, _ = graph_all(emu.session(), f"{base}?$TOP=7&$ORDERBY={field.upper()} ASC", graph_tok)
    assert [i["id"] for i in upper] == [i["id"] for i in asc]


def test_graph_orderby_asc_with_a_window(emu: EmulatorInfo, graph_tok: str) -> None:
    everything, _ = graph_all(emu.session(), f"{emu['graph']}/v1.0/auditLogs/directoryAudits", graph_tok)
    chosen = sorted(i["activityDateTime"] for i in everything)[10:30]
    url = (
        f"{emu['graph']}/v1.0/auditLogs/directoryAudits?$top=3&$orderby=activityDateTime asc"
        f"&$filter=activityDateTime ge {chosen[0]} and activityDateTime le {chosen[-1]}"
    )
    got, _ = graph_all(emu.session(), url, graph_tok)
    assert [i["activityDateTime"] for i in got] == chosen


@pytest.mark.parametrize("order", ["userPrincipalName", "createdDateTime sideways", "createdDateTime asc, id"])
def test_graph_orderby_on_anything_else_is_400(emu: EmulatorInfo, graph_tok: str, order: str) -> None:
    r = emu.session().get(f"{emu['graph']}/beta/auditLogs/signIns?$orderby={order}", headers=_auth(graph_tok))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest"


def test_graph_beta_options_without_dollar(emu: EmulatorInfo, graph_tok: str) -> None:
    """'On the beta endpoint, the $ prefix is optional' (Graph query-parameters doc)."""
    with_dollar, _ = graph_all(
        emu.session(),
        f"{emu['graph']}/beta/auditLogs/signIns?$top=9&$orderby=createdDateTime asc"
        "&$filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')",
        graph_tok,
    )
    without, pages = graph_all(
        emu.session(),
        f"{emu['graph']}/beta/auditLogs/signIns?top=9&orderby=createdDateTime asc"
        "&filter=signInEventTypes/any(t: t eq 'nonInteractiveUser')",
        graph_tok,
    )
    assert pages > 1 and [i["id"] for i in without] == [i["id"] for i in with_dollar]
    assert {tuple(i["signInEventTypes"]) for i in without} == {("nonInteractiveUser",)}
    upper, _ = graph_all(
        emu.session(),
        f"{emu['graph']}/beta/auditLogs/signIns?$TOP=9&$OrderBy=createdDateTime asc"
        "&$FILTER=signInEventTypes/any(t: t eq 'nonInteractiveUser')",
        graph_tok,
    )
    assert [i["id"] for i in upper] == [i["id"] for i in with_dollar]
    for option in ("select=id", "$select=id"):  # an option beta reads either way: the same answer
        r = emu.session().get(f"{emu['graph']}/beta/auditLogs/signIns?{option}", headers=_auth(graph_tok))
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalidRequest", option


# -- 4. Login: instance discovery, other resources, client_secret_basic ---------------------------


def test_instance_discovery_answers_for_the_emulator_and_refuses_unknown_hosts(emu: EmulatorInfo) -> None:
    s = emu.session()
    url = f"{emu['login']}/common/discovery/instance"
    authorize = f"{emu['login']}/{TENANT}/oauth2/v2.0/authorize"
    r = s.get(url, params={"api-version": "1.1", "authorization_endpoint": authorize})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["tenant_discovery_endpoint"] == f"{emu['login']}/{TENANT}/v2.0/.well-known/openid-configuration"
    assert s.get(doc["tenant_discovery_endpoint"]).status_code == 200
    aliases = [g["aliases"] for g in doc["metadata"]]
    assert ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"] in aliases
    r = s.get(url, params={"api-version": "1.0", "authorization_endpoint": authorize})
    assert r.status_code == 200 and "metadata" not in r.json()
    r = s.get(url, params={"api-version": "1.1", "authorization_endpoint": "https://evil.example/x/oauth2/authorize"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_instance"
    assert r.json()["error_codes"] == [50049]


@pytest.mark.parametrize("authority", ["common", "organizations"])
def test_multi_tenant_openid_configuration(emu: EmulatorInfo, authority: str) -> None:
    s = emu.session()
    doc = s.get(f"{emu['login']}/{authority}/v2.0/.well-known/openid-configuration").json()
    assert doc["issuer"] == f"{emu['login']}/{{tenantid}}/v2.0"
    assert doc["token_endpoint"] == f"{emu['login']}/{authority}/oauth2/v2.0/token"
    v1 = s.get(f"{emu['login']}/{authority}/.well-known/openid-configuration").json()
    assert v1["issuer"] == "https://sts.windows.net/{tenantid}/"
    assert s.get(f"{emu['login']}/not-a-tenant/v2.0/.well-known/openid-configuration").status_code == 400


def test_msal_with_instance_discovery_on(emu: EmulatorInfo) -> None:
    """MSAL validating the authority through the discovery endpoint (here the emulator's)."""
    app = msal.ConfidentialClientApplication(
        emu["client_id"],
        client_credential=emu["client_secret"],
        authority=f"{emu['login']}/{TENANT}",
        http_client=emu.session(),
        instance_discovery=f"{emu['login']}/common/discovery/instance",
    )
    result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result


@pytest.mark.parametrize(
    "resource",
    ["https://management.azure.com/", "https://vault.azure.net", "https://contoso.sharepoint.com",
     "https://outlook.office365.com", "https://api.securitycenter.microsoft.com", "self"],
)  # fmt: skip
def test_tokens_for_resources_no_emulated_api_serves(emu: EmulatorInfo, resource: str) -> None:
    resource = f"api://{emu['client_id']}" if resource == "self" else resource
    s = emu.session()
    form = {"grant_type": "client_credentials", "client_id": emu["client_id"], "client_secret": emu["client_secret"]}
    r = s.post(f"{emu['login']}/{TENANT}/oauth2/v2.0/token", data={**form, "scope": f"{resource}/.default"})
    assert r.status_code == 200, r.text
    tok = r.json()["access_token"]
    r = s.post(f"{emu['login']}/{TENANT}/oauth2/token", data={**form, "resource": resource})
    assert r.status_code == 200 and r.json()["resource"] == resource, r.text
    # the token is good for that resource only: no emulated API accepts it
    assert s.get(f"{emu['graph']}/v1.0/auditLogs/directoryAudits", headers=_auth(tok)).status_code == 401


def test_unknown_resource_is_still_refused(emu: EmulatorInfo) -> None:
    form = {"grant_type": "client_credentials", "client_id": emu["client_id"], "client_secret": emu["client_secret"]}
    r = emu.session().post(f"{emu['login']}/{TENANT}/oauth2/token", data={**form, "resource": "https://x.example"})
    assert r.status_code == 400 and r.json()["error_codes"] == [500011]


def test_client_secret_basic(emu: EmulatorInfo) -> None:
    """The OpenID configuration advertises client_secret_basic: id and secret in `Authorization: Basic`."""
    pair = base64.b64encode(f"{emu['client_id']}:{emu['client_secret']}".encode()).decode()
    s = emu.session()
    data: dict[str, Any] = {"grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"}
    for scheme in ("Basic", "basic"):
        r = s.post(f"{emu['login']}/{TENANT}/oauth2/v2.0/token", data=data, headers=_auth(pair, scheme))
        assert r.status_code == 200, r.text
    logged = [json.loads(line) for line in (emu.state_dir / "requests.ndjson").read_text().splitlines()]
    basic = [x for x in logged if x["path"].endswith("/oauth2/v2.0/token") and x["status"] == 200]
    assert basic and all(x["app"] == emu["client_id"] for x in basic)  # the request log names the app
    wrong = base64.b64encode(f"{emu['client_id']}:nope".encode()).decode()
    r = s.post(f"{emu['login']}/{TENANT}/oauth2/v2.0/token", data=data, headers=_auth(wrong, "Basic"))
    assert r.status_code == 401 and r.json()["error_codes"] == [7000215]
