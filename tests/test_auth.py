"""Unit tests of agent/auth.py: token providers with real MSAL against the emulator's login, over
loopback TLS, in this process (one emulator for the module).

What is asserted is what an operator sees: a token that works and is never printed, a cached token
reused until the API rejects it, and each way a login fails turned into the right error (refused
credentials and an unknown tenant are fatal, an unreachable endpoint is worth a retry, a CA that
does not verify is configuration), never a traceback. Credential files are read by pure logic that
is checked against the emulator's own view of its client certificate.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.auth import TokenProvider, client_credential
from agent.config import Credential, Endpoints, HttpConfig, Secret, TenantConfig
from agent.errors import AuthError, ConfigError, TransientApiError
from agent.logs import scrub
from tests.emulator_fixture import EmulatorInfo, running_emulator

SCENARIO = """
seed = 20
start = "-2h"
end = "-10m"
[tenant]
license = "p2"
[streams."graph.signins.interactive"]
records = 1
[auth]
token_lifetime = "3599s"
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with running_emulator(SCENARIO, tmp_path_factory.mktemp("login")) as running:
        yield running


def tenant(emu: EmulatorInfo, tmp_path: Path, secret: str | None = None, **kw: Any) -> TenantConfig:
    path = tmp_path / "client_secret"
    path.write_text(secret if secret is not None else emu["client_secret"])
    return TenantConfig(id=kw.pop("id", emu["tenant_id"]), client_id=emu["client_id"],
                        credential=Credential(secret=Secret(f"file:{path}")),
                        endpoints=Endpoints(kw.pop("login", emu["login"]), emu["graph"], emu["management"]), **kw)


def trusted(emu: EmulatorInfo) -> HttpConfig:
    return HttpConfig(ca_file=Path(emu["ca_file"]))


def token_requests(emu: EmulatorInfo) -> int:
    log = Path(emu["request_log"])
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for ln in lines if "/oauth2/v2.0/token" in str(orjson.loads(ln).get("path", "")))


async def test_a_secret_gets_a_bearer_token_that_is_never_printed(emu: EmulatorInfo, tmp_path: Path) -> None:
    provider = TokenProvider(tenant(emu, tmp_path), "https://graph.microsoft.com/", trusted(emu))
    assert provider.scopes == ["https://graph.microsoft.com/.default"]
    token = await provider.token()
    assert token.count(".") == 2  # a JWT
    assert token not in scrub(f"Authorization: Bearer {token}")  # registered as a secret the moment it exists


async def test_a_cached_token_is_reused_until_invalidated(emu: EmulatorInfo, tmp_path: Path) -> None:
    provider = TokenProvider(tenant(emu, tmp_path), "https://graph.microsoft.com", trusted(emu))
    first = await provider.token()
    before = token_requests(emu)
    assert await provider.token() == first
    assert token_requests(emu) == before  # msal's cache answered: no second request to login
    await provider.invalidate()  # the API rejected it: forget it
    await provider.token()
    assert token_requests(emu) == before + 1


async def test_a_refused_secret_is_an_auth_error_naming_tenant_client_and_code(emu: EmulatorInfo,
                                                                              tmp_path: Path) -> None:
    provider = TokenProvider(tenant(emu, tmp_path, secret="not-the-secret", name="contoso"),
                             "https://graph.microsoft.com", trusted(emu))
    with pytest.raises(AuthError) as err:
        await provider.token()
    text = str(err.value)
    assert "tenant contoso" in text and emu["client_id"] in text and "invalid_client" in text
    assert "AADSTS" in text and "\n" not in text  # the first line of Microsoft's description only
    assert "not-the-secret" not in text


async def test_an_unknown_tenant_is_an_auth_error(emu: EmulatorInfo, tmp_path: Path) -> None:
    provider = TokenProvider(tenant(emu, tmp_path, id="00000000-0000-0000-0000-0000000000aa"),
                             "https://graph.microsoft.com", trusted(emu))
    with pytest.raises(AuthError, match="tenant 00000000-0000-0000-0000-0000000000aa"):
        await provider.token()


async def test_an_unreachable_login_endpoint_is_transient(emu: EmulatorInfo, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = TokenProvider(tenant(emu, tmp_path, login=f"https://127.0.0.1:{port}"),
                             "https://graph.microsoft.com", trusted(emu))
    with pytest.raises(TransientApiError, match="token endpoint unreachable"):
        await provider.token()


async def test_a_login_whose_ca_is_not_trusted_is_configuration_not_an_outage(
        emu: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # REQUESTS_CA_BUNDLE pointing at the right CA must not rescue it: only [http] ca_file counts
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu["ca_file"])
    provider = TokenProvider(tenant(emu, tmp_path), "https://graph.microsoft.com", HttpConfig())
    with pytest.raises(AuthError, match=r"TLS verification of the login endpoint failed.*ca_file"):
        await provider.token()


async def test_the_configured_ca_wins_over_a_bogus_environment_bundle(
        emu: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # proxies come from config only
    provider = TokenProvider(tenant(emu, tmp_path), "https://graph.microsoft.com", trusted(emu))
    assert (await provider.token()).count(".") == 2


# ------------------------------------------------------------------------ credential files
def test_a_pem_certificate_gives_msal_the_key_and_the_certificate_thumbprint(emu: EmulatorInfo) -> None:
    cred = Credential(certificate_file=Path(emu["client_certificate"]), private_key_file=Path(emu["client_key"]))
    out = client_credential(TenantConfig(id="t", client_id="c", credential=cred))
    assert isinstance(out, dict)
    assert out["thumbprint"].upper() == emu["client_thumbprint"]  # what the emulator expects in x5t
    assert out["private_key"] == Path(emu["client_key"]).read_text()
    assert "passphrase" not in out


def test_the_thumbprint_is_the_sha1_of_the_der_certificate(emu: EmulatorInfo) -> None:
    pem = Path(emu["client_certificate"]).read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    cred = Credential(certificate_file=Path(emu["client_certificate"]), private_key_file=Path(emu["client_key"]))
    out = client_credential(TenantConfig(id="t", client_id="c", credential=cred))
    assert isinstance(out, dict) and out["thumbprint"] == hashlib.sha1(der).hexdigest()  # noqa: S324


def test_a_pfx_is_passed_by_path_with_its_passphrase(emu: EmulatorInfo, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("pfx-passphrase\n")
    cred = Credential(pfx_file=Path(emu["client_pfx"]), pfx_passphrase=Secret(f"file:{tmp_path / 'pw'}"))
    out = client_credential(TenantConfig(id="t", client_id="c", credential=cred))
    assert out == {"private_key_pfx_path": emu["client_pfx"], "passphrase": "pfx-passphrase"}
    assert "pfx-passphrase" not in scrub("passphrase pfx-passphrase")


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: Credential(), "no credential configured"),
    (lambda d: Credential(pfx_file=d / "absent.pfx"), "does not exist"),
    (lambda d: Credential(certificate_file=d / "absent.pem", private_key_file=d / "absent.key"),
     "cannot read certificate or key"),
    (lambda d: Credential(certificate_file=d / "not.pem", private_key_file=d / "not.pem"), "is not a PEM certificate"),
    (lambda d: Credential(secret=Secret("env:AGENT_TEST_UNSET_SECRET")), "AGENT_TEST_UNSET_SECRET"),
])
def test_an_unusable_credential_is_a_config_error_naming_the_tenant(tmp_path: Path, make: Any, message: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_TEST_UNSET_SECRET", raising=False)
    (tmp_path / "not.pem").write_text("hello")
    cfg = TenantConfig(id="t", client_id="c", credential=make(tmp_path), name="fabrikam")
    with pytest.raises(ConfigError, match=message) as err:
        client_credential(cfg)
    assert "fabrikam" in str(err.value) or "AGENT_TEST_UNSET_SECRET" in str(err.value)


async def test_an_unreadable_private_key_is_an_auth_error_not_a_traceback(emu: EmulatorInfo, tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    cred = Credential(certificate_file=Path(emu["client_certificate"]), private_key_file=tmp_path / "bad.key")
    cfg = replace(tenant(emu, tmp_path), credential=cred, name="contoso")
    with pytest.raises(AuthError, match="tenant contoso"):
        await TokenProvider(cfg, "https://graph.microsoft.com", trusted(emu)).token()
