"""Login: OIDC discovery and client credentials with real msal (secret, PEM certificate, PFX)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msal
import pytest

from tests.emulator.helpers import GRAPH_SCOPE, MANAGEMENT_SCOPE, bearer, token
from tests.emulator_fixture import EmulatorInfo, running_emulator

SCENARIO = """
seed = 3
[tenant]
id = "11111111-2222-4333-8444-555555555555"
[streams."graph.directory_audits"]
records = 20
[auth]
token_lifetime = "2s"
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("login")) as e:
        yield e


def _app(
    emu: EmulatorInfo, credential: object, tenant: str | None = None, client_id: str | None = None
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or emu["client_id"],
        client_credential=credential,
        authority=f"{emu['login']}/{tenant or emu['tenant_id']}",
        http_client=emu.session(),
        instance_discovery=False,
    )


def test_openid_configuration(emu: EmulatorInfo) -> None:
    r = emu.session().get(f"{emu['login']}/{emu['tenant_id']}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["token_endpoint"] == f"{emu['login']}/{emu['tenant_id']}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].startswith("https://127.0.0.1:")


def test_unknown_tenant_is_aadsts90002(emu: EmulatorInfo) -> None:
    r = emu.session().get(
        f"{emu['login']}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration"
    )
    assert r.status_code == 400
    body = r.json()
    assert body["error_codes"] == [90002] and body["error_description"].startswith("AADSTS90002:")
    assert {"timestamp", "trace_id", "correlation_id"} <= body.keys()


def test_secret_flow(emu: EmulatorInfo) -> None:
    result = _app(emu, emu["client_secret"]).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 2


def test_wrong_secret_is_aadsts7000215(emu: EmulatorInfo) -> None:
    result = _app(emu, "wrong").acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]


def test_unknown_app_is_aadsts700016(emu: EmulatorInfo) -> None:
    result = _app(emu, "x", client_id="99999999-9999-4999-8999-999999999999").acquire_token_for_client(
        scopes=[GRAPH_SCOPE]
    )
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]


def test_scope_must_end_with_default(emu: EmulatorInfo) -> None:
    result = _app(emu, emu["client_secret"]).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/AuditLog.Read.All"]
    )
    assert result["error"] == "invalid_scope" and result["error_codes"] == [1002012]


def test_unknown_resource_is_aadsts500011(emu: EmulatorInfo) -> None:
    result = _app(emu, emu["client_secret"]).acquire_token_for_client(scopes=["https://example.com/.default"])
    assert result["error_codes"] == [500011]


def test_certificate_rs256(emu: EmulatorInfo) -> None:
    cred = {"private_key": Path(emu["client_key"]).read_text(), "thumbprint": emu["client_thumbprint"]}
    result = _app(emu, cred).acquire_token_for_client(scopes=[MANAGEMENT_SCOPE])
    assert "access_token" in result, result


def test_certificate_pfx_ps256(emu: EmulatorInfo) -> None:
    result = _app(emu, {"private_key_pfx_path": emu["client_pfx"]}).acquire_token_for_client(
        scopes=[GRAPH_SCOPE]
    )
    assert "access_token" in result, result


def test_certificate_with_wrong_key_is_rejected(emu: EmulatorInfo, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    result = _app(
        emu, {"private_key": other, "thumbprint": emu["client_thumbprint"]}
    ).acquire_token_for_client(scopes=[GRAPH_SCOPE])
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]


def test_v1_endpoint_with_resource(emu: EmulatorInfo) -> None:
    r = emu.session().post(
        f"{emu['login']}/{emu['tenant_id']}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emu["client_id"],
            "client_secret": emu["client_secret"],
            "resource": "https://manage.office.com",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resource"] == "https://manage.office.com" and body["expires_in"] == "2"


def test_tokens_are_bound_to_audience_and_expire(emu: EmulatorInfo) -> None:
    s = emu.session()
    url = f"{emu['graph']}/v1.0/auditLogs/directoryAudits"
    management_token = token(emu, MANAGEMENT_SCOPE)
    r = s.get(url, headers=bearer(management_token))
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    graph_token = token(emu, GRAPH_SCOPE)
    assert s.get(url, headers=bearer(graph_token)).status_code == 200
    time.sleep(2.1)
    r = s.get(url, headers=bearer(graph_token))
    assert r.status_code == 401
    assert r.json()["error"]["message"] == "Lifetime validation failed, the token is expired."
    r = s.get(
        f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed/subscriptions/list",
        headers=bearer(management_token),
    )
    assert r.status_code == 401
    assert r.json() == {"Message": "Authorization has been denied for this request."}
