"""Access tokens from Entra ID with msal: one confidential client per (tenant, resource).

msal is synchronous (requests), so every call goes through `asyncio.to_thread` here and nowhere
else. msal gets its own requests.Session with `trust_env = False`: otherwise REQUESTS_CA_BUNDLE in
the environment silently replaces the CA we configure (measured), and proxies come from config.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Callable
from typing import Any

import jwt
import msal
import requests
from cryptography import x509
from requests.adapters import HTTPAdapter

from agent.config import HttpConfig, TenantConfig
from agent.errors import AuthError, ConfigError, TransientApiError
from agent.http import ssl_context
from agent.logs import register_secret


class _ContextAdapter(HTTPAdapter):
    """Makes requests use our SSL context (system store + configured CA file)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self._ctx = ctx
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ctx
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        # Through a proxy, urllib3 tunnels with a separate pool manager; without this it would
        # verify the tunnelled TLS against certifi alone and reject a configured CA (seen in tests).
        kwargs["ssl_context"] = self._ctx
        return super().proxy_manager_for(proxy, **kwargs)


def _http_session(cfg: HttpConfig) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", _ContextAdapter(ssl_context(cfg)))
    if cfg.proxy:
        session.proxies = {"https": cfg.proxy}
    return session


def client_credential(tenant: TenantConfig) -> str | dict[str, Any]:
    """What msal takes as `client_credential`, read from the secret/certificate files now."""
    cred = tenant.credential
    if cred.secret is not None:
        return register_secret(cred.secret.reveal())
    if cred.certificate_file and cred.private_key_file:
        try:
            cert_pem = cred.certificate_file.read_bytes()
            key_pem = cred.private_key_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"tenant {tenant.label}: cannot read certificate or key: {exc}") from None
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ConfigError(f"tenant {tenant.label}: {cred.certificate_file} is not a PEM certificate") from None
        from cryptography.hazmat.primitives.serialization import Encoding

        thumbprint = hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest()  # noqa: S324 - x5t is SHA-1 by spec
        out: dict[str, Any] = {"private_key": key_pem, "thumbprint": thumbprint}
        if cred.private_key_passphrase:
            out["passphrase"] = register_secret(cred.private_key_passphrase.reveal())
        return out
    if cred.pfx_file:
        if not cred.pfx_file.is_file():
            raise ConfigError(f"tenant {tenant.label}: pfx_file {cred.pfx_file} does not exist")
        pfx: dict[str, Any] = {"private_key_pfx_path": str(cred.pfx_file)}
        if cred.pfx_passphrase:
            pfx["passphrase"] = register_secret(cred.pfx_passphrase.reveal())
        return pfx
    raise ConfigError(f"tenant {tenant.label}: no credential configured")


def _request_error(label: str, exc: requests.RequestException) -> AuthError | TransientApiError:
    """A TLS verification failure is configuration (wrong CA), not an outage worth retrying."""
    if isinstance(exc, requests.exceptions.SSLError):
        return AuthError(f"tenant {label}: TLS verification of the login endpoint failed; if a TLS-inspecting "
                         f"proxy is in the path, set [http] ca_file to its CA bundle")
    return TransientApiError(f"token endpoint unreachable for tenant {label}: {type(exc).__name__}")


class TokenProvider:
    """Bearer tokens for one tenant and one resource (e.g. Graph), cached by msal."""

    def __init__(self, tenant: TenantConfig, resource: str, http: HttpConfig) -> None:
        self.tenant = tenant
        self.scopes = [f"{resource.rstrip('/')}/.default"]
        self._http = http
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()

    def _build(self) -> msal.ConfidentialClientApplication:
        try:
            return msal.ConfidentialClientApplication(
                self.tenant.client_id,
                client_credential=client_credential(self.tenant),
                authority=f"{self.tenant.endpoints.login}/{self.tenant.id}",
                instance_discovery=False,  # never call the public discovery host; known clouds need none
                http_client=_http_session(self._http),
            )
        except ValueError as exc:  # unreadable key, bad authority
            raise AuthError(f"tenant {self.tenant.label}: cannot set up the token client: {exc}") from None
        except requests.RequestException as exc:  # msal fetches the OIDC document while constructing
            raise _request_error(self.tenant.label, exc) from None

    def _acquire(self) -> dict[str, Any]:
        if self._app is None:
            self._app = self._build()
        try:
            result: dict[str, Any] = self._app.acquire_token_for_client(scopes=self.scopes)
        except requests.RequestException as exc:
            raise _request_error(self.tenant.label, exc) from None
        except ValueError as exc:  # e.g. "Unable to get authority configuration"
            raise AuthError(f"tenant {self.tenant.label}: {exc}") from None
        except jwt.PyJWTError as exc:  # msal signs the client assertion with PyJWT: a PEM it cannot load
            raise AuthError(f"tenant {self.tenant.label}: the certificate's private key cannot sign the client "
                            f"assertion ({type(exc).__name__}); check private_key_file") from None
        return result

    async def token(self) -> str:
        async with self._lock:
            result = await asyncio.to_thread(self._acquire)
        if "access_token" in result:
            return register_secret(str(result["access_token"]))
        code = result.get("error", "unknown_error")
        desc = str(result.get("error_description", "")).splitlines()[0][:300]
        if code in ("temporarily_unavailable",) or str(result.get("status", "")).startswith("5"):
            raise TransientApiError(f"token request for tenant {self.tenant.label} failed: {code}: {desc}")
        raise AuthError(f"token request for tenant {self.tenant.label} (client {self.tenant.client_id}) "
                        f"was refused: {code}: {desc}")

    async def invalidate(self) -> None:
        """Forget cached tokens after the API rejected one, so the next call fetches a new one."""
        async with self._lock:
            if self._app is not None:
                await asyncio.to_thread(self._app.remove_tokens_for_client)


Tokens = Callable[[TenantConfig, str], TokenProvider]  # (tenant, resource) -> its one token provider


class TokenProviders:
    """One `TokenProvider` per (tenant, resource): msal's token cache lives in the provider, so every
    user of a pair (a source, the triangulation witness, Sentinel's reader, writer and anchor) shares
    one token instead of asking Entra ID for its own. The process's instance is the Runtime's
    (agent/app.py); this is the one place a provider is built (tests/test_architecture.py)."""

    def __init__(self, http: HttpConfig) -> None:
        self._http = http
        self._by_key: dict[tuple[str, str], TokenProvider] = {}

    def __call__(self, tenant: TenantConfig, resource: str) -> TokenProvider:
        key = (tenant.id, resource)
        if key not in self._by_key:
            self._by_key[key] = TokenProvider(tenant, resource, self._http)
        return self._by_key[key]
