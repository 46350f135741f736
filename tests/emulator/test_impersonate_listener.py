"""`agent emulator --impersonate` without namespaces: one listener (an ephemeral port here), routed by
the Host header (else by path), links built from that Host, national-cloud names on request, and
every request in the per-client request log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from tests.emulator_fixture import EmulatorInfo, running_emulator

TENANT = "7c7c7c7c-1111-4222-8333-444444444444"
SCENARIO = f"""
seed = 5
start = "-10h"
end = "-2h"
[tenant]
id = "{TENANT}"
license = "p1"
[streams."graph.signins.interactive"]
records = 30
[streams."o365.exchange"]
records = 40
[management]
content_delay = ["1m", "5m"]
straggler_fraction = 0.0
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    args = ("--impersonate", "--port", "0", "--cloud", "global", "--cloud", "gcc-high")
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("impersonate"), extra_args=args) as e:
        yield e


def _port(emu: EmulatorInfo) -> int:
    return int(emu["graph"].rsplit(":", 1)[1])


def _call(emu: EmulatorInfo, method: str, host: str, path: str, **kw: object) -> requests.Response:
    """Connect to 127.0.0.1 (the certificate has that IP too) but name `host`, as a resolver would."""
    headers = {"Host": f"{host}:{_port(emu)}", "User-Agent": "listener-test/1", **kw.pop("headers", {})}  # type: ignore[dict-item]
    return emu.session().request(method, f"https://127.0.0.1:{_port(emu)}{path}", headers=headers, **kw)  # type: ignore[arg-type]


def _token(emu: EmulatorInfo, login: str, **form: str) -> str:
    path = f"/{TENANT}/oauth2/token" if "resource" in form else f"/{TENANT}/oauth2/v2.0/token"
    data = {"grant_type": "client_credentials", "client_id": emu["client_id"], "client_secret": emu["client_secret"]}
    r = _call(emu, "POST", login, path, data={**data, **form})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_first_line_and_certificate_name_the_microsoft_hosts(emu: EmulatorInfo) -> None:
    assert emu["login"] == f"https://login.microsoftonline.com:{_port(emu)}"
    assert emu["graph"] == f"https://graph.microsoft.com:{_port(emu)}"
    assert emu["management"] == f"https://manage.office.com:{_port(emu)}"
    hosts = emu["impersonated"]
    assert hosts["login.windows.net"] == "login" and hosts["graph.microsoft.us"] == "graph"
    assert hosts["manage.office365.us"] == "management"
    cert = x509.load_pem_x509_certificate(Path(emu["state_dir"], "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert set(hosts) <= set(names)


def test_v1_and_v2_tokens_and_links_from_the_host(emu: EmulatorInfo) -> None:
    doc = _call(emu, "GET", "login.microsoftonline.us", f"/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"https://login.microsoftonline.us:{_port(emu)}/{TENANT}/oauth2/v2.0/token"
    assert doc["msgraph_host"] == "graph.microsoft.us"
    tok = _token(emu, "login.microsoftonline.us", resource="https://graph.microsoft.us")  # v1, national cloud
    r = _call(emu, "GET", "graph.microsoft.us", "/v1.0/auditLogs/signIns?$top=10&unknownParameter=x",
              headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["@odata.nextLink"].startswith(f"https://graph.microsoft.us:{_port(emu)}/v1.0/auditLogs/signIns?")
    mtok = _token(emu, "login.microsoftonline.com", scope="https://manage.office.com/.default")  # v2
    r = _call(emu, "GET", "manage.office.com", f"/api/v1.0/{TENANT}/activity/feed/subscriptions/content"
              "?contentType=Audit.Exchange", headers={"Authorization": f"Bearer {mtok}"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() and all(
        b["contentUri"].startswith(f"https://manage.office.com:{_port(emu)}/api/v1.0/{TENANT}/activity/feed/audit/")
        for b in r.json()
    )


def test_routing_by_host_then_by_path(emu: EmulatorInfo) -> None:
    # A login path on the Graph host is Graph's business (and Graph does not know it).
    r = _call(emu, "POST", "graph.microsoft.com", f"/{TENANT}/oauth2/token", data={"grant_type": "x"})
    assert r.status_code in (400, 404, 405) and "AADSTS" not in r.text
    # An unknown host (here the bare IP) is routed by path.
    r = emu.session().get(f"https://127.0.0.1:{_port(emu)}/{TENANT}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200 and r.json()["token_endpoint"].startswith(f"https://127.0.0.1:{_port(emu)}/")
    r = emu.session().get(f"https://127.0.0.1:{_port(emu)}/v1.0/auditLogs/signIns")
    assert r.status_code == 401  # Graph answered (no token)
    r = emu.session().get(f"https://127.0.0.1:{_port(emu)}/api/v1.0/{TENANT}/activity/feed/subscriptions/list")
    assert r.status_code == 401 and "Authorization has been denied" in r.text


def test_request_log_names_the_client(emu: EmulatorInfo) -> None:
    _call(emu, "GET", "login.windows.net", f"/{TENANT}/.well-known/openid-configuration")
    _token(emu, "login.windows.net", resource="https://graph.microsoft.com")
    _call(emu, "GET", "graph.microsoft.us", "/v1.0/auditLogs/signIns")
    _call(emu, "GET", "manage.office.com", f"/api/v1.0/{TENANT}/activity/feed/subscriptions/list")
    lines = [json.loads(x) for x in Path(emu["request_log"]).read_text().splitlines()]
    mine = [x for x in lines if x["client"] == "listener-test/1"]
    assert {x["host"].split(":")[0] for x in mine} >= {"login.windows.net", "graph.microsoft.us", "manage.office.com"}
    token_lines = [x for x in mine if x["path"].endswith("/token") and x["status"] == 200]
    assert token_lines and all(x["app"] == emu["client_id"] for x in token_lines)
    assert all(set(x) >= {"time", "method", "status", "throttled", "fault", "ms"} for x in mine)


def test_cloud_and_port_need_impersonate(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="need --impersonate"),
        running_emulator(SCENARIO, tmp_path, extra_args=("--port", "0"), timeout=20),
    ):
        pass
