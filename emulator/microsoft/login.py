"""Entra ID login: OpenID configuration and the v1/v2 token endpoints, client credentials only.

Errors use AAD's shape (error, error_description starting with the AADSTS code, error_codes,
timestamp, trace_id, correlation_id, error_uri). Client assertions are verified for real: header
thumbprint, RS256 or PS256 signature over the emulator's client certificate, aud, iss/sub, exp.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from emulator.microsoft import discovery
from emulator.microsoft.tokens import Resource, b64decode, credentials, find_resource, other_resource
from emulator.world.clock import TICKS_PER_SECOND, now_ticks
from emulator.world.state import State

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_SKEW = 300  # seconds of clock skew tolerated on assertion times


# cloud_instance_name and msgraph_host of the national clouds' login hosts (--impersonate)
_CLOUD_BY_LOGIN_HOST = {
    "login.microsoftonline.us": ("microsoftonline.us", "graph.microsoft.us"),
    "login.chinacloudapi.cn": ("partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
    "login.partner.microsoftonline.cn": ("partner.microsoftonline.cn", "microsoftgraph.chinacloudapi.cn"),
}


# The multi-tenant authorities serve an OpenID configuration too (MSAL and azure-identity read it
# before a tenant is known); its issuer carries the `{tenantid}` placeholder, and `consumers` names
# the fixed Microsoft-account tenant.
_MULTI_TENANT = {
    "common": "{tenantid}",
    "organizations": "{tenantid}",
    "consumers": "9188040d-6c67-4c5b-b112-36a304b66dad",
}


def _issuer(base: str, tenant: str, v2: bool) -> str:
    tid = _MULTI_TENANT.get(tenant, tenant)
    if v2:
        return f"{base.rsplit('/', 1)[0]}/{tid}/v2.0"
    return f"https://sts.windows.net/{tid}/"


@dataclass
class AadError(Exception):
    status: int
    error: str
    code: int
    text: str


def _error_response(request: web.Request, err: AadError) -> web.Response:
    trace = str(uuid.uuid4())
    corr = request.headers.get("client-request-id") or str(uuid.uuid4())
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    body = {
        "error": err.error,
        "error_description": f"AADSTS{err.code}: {err.text} Trace ID: {trace} Correlation ID: {corr} "
        f"Timestamp: {stamp}",
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": f"https://{request.host}/error?code={err.code}",
    }
    return web.Response(status=err.status, body=orjson.dumps(body), content_type="application/json")


def _tenant(state: State, request: web.Request) -> str:
    tenant = request.match_info["tenant"].lower()
    if state.scenario.tenant(tenant) is None:
        raise AadError(
            400,
            "invalid_tenant" if request.method == "GET" else "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
            "signing in to the correct cloud. Check with your subscription administrator, this may "
            "happen if there are no active subscriptions for the tenant.",
        )
    return tenant


def _basic_client(request: web.Request, fields: dict[str, str]) -> dict[str, str]:
    """client_secret_basic (advertised in the OpenID configuration; RFC 6749 §2.3.1): client id and
    secret form-urlencoded, joined by ':', base64 in `Authorization: Basic` (scheme case-insensitive)."""
    raw = credentials(request.headers.get("Authorization"), "Basic")
    if raw is None:
        return {}
    try:
        client, _, secret = base64.b64decode(raw, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise AadError(
            401, "invalid_client", 7000216, "The client credentials in the Authorization header are malformed."
        ) from None
    client, secret = unquote_plus(client), unquote_plus(secret)
    if fields.get("client_id") and fields["client_id"].lower() != client.lower():
        raise AadError(
            400, "invalid_request", 50144, "The client_id in the body does not match the Authorization header."
        )
    return {"client_id": client, "client_secret": secret} if "client_secret" not in fields else {"client_id": client}


class LoginService:
    """The `login` listener: stands for https://login.microsoftonline.com."""

    def __init__(self, state: State) -> None:
        self.state = state

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self.openid_configuration)
        app.router.add_get("/common/discovery/instance", self.instance_discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token_v2)
        app.router.add_post("/{tenant}/oauth2/token", self.token_v1)
        return app

    async def openid_configuration(self, request: web.Request) -> web.Response:
        try:
            tenant = _tenant(self.state, request)
        except AadError as err:
            if request.match_info["tenant"].lower() not in _MULTI_TENANT:
                return _error_response(request, err)
            tenant = request.match_info["tenant"].lower()
        v2 = "/v2.0/" in request.path
        instance, graph_host = _CLOUD_BY_LOGIN_HOST.get(
            request.host.rsplit(":", 1)[0].lower(), ("microsoftonline.com", "graph.microsoft.com")
        )
        base = f"https://{request.host}/{tenant}"
        suffix = "/v2.0" if v2 else ""
        doc = {
            "token_endpoint": f"{base}/oauth2{suffix}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"https://{request.host}/{tenant}/discovery{suffix}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": _issuer(base, tenant, v2),
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2{suffix}/authorize",
            "device_authorization_endpoint": f"{base}/oauth2{suffix}/devicecode",
            "end_session_endpoint": f"{base}/oauth2{suffix}/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": instance,
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": graph_host,
        }
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def instance_discovery(self, request: web.Request) -> web.Response:
        """MSAL's instance discovery (see `discovery`): known for our own and impersonated hosts."""
        endpoint = request.query.get("authorization_endpoint")
        if not endpoint:
            return _error_response(
                request,
                AadError(400, "invalid_request", 90014, "The required field 'authorization_endpoint' is missing."),
            )
        urls = [self.state.urls.get("login", ""), *self.state.aliases.get("login", ())]
        own = [urlsplit(url).netloc for url in urls if url]
        own += [h for h, svc in self.state.impersonated.items() if svc == "login"]
        doc = discovery.answer(endpoint, request.query.get("api-version", ""), own)
        if doc is None:
            return _error_response(
                request, AadError(400, "invalid_instance", 50049, "Unknown or invalid instance.")
            )
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    async def token_v2(self, request: web.Request) -> web.Response:
        return await self._token(request, v1=False)

    async def token_v1(self, request: web.Request) -> web.Response:
        return await self._token(request, v1=True)

    async def _token(self, request: web.Request, v1: bool) -> web.Response:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        try:
            fields.update(_basic_client(request, fields))
        except AadError as err:
            return _error_response(request, err)
        try:
            tenant = _tenant(self.state, request)
            resource = self._resource(fields, v1, tenant)
            self._authenticate(request, fields)
        except AadError as err:
            return _error_response(request, err)
        auth = self.state.scenario.auth
        token, exp = self.state.tokens.issue(tenant, auth.client_id, resource, auth.token_lifetime)
        lifetime = auth.token_lifetime // TICKS_PER_SECOND
        body: dict[str, Any]
        if v1:
            now = now_ticks() // TICKS_PER_SECOND
            body = {
                "token_type": "Bearer",
                "expires_in": str(lifetime),
                "ext_expires_in": str(lifetime),
                "expires_on": str(exp),
                "not_before": str(now),
                "resource": fields.get("resource", ""),
                "access_token": token,
            }
        else:
            body = {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }
        return web.Response(
            body=orjson.dumps(body),
            content_type="application/json",
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )

    def _resource(self, fields: dict[str, str], v1: bool, tenant: str) -> Resource:
        grant = fields.get("grant_type", "")
        if grant != "client_credentials":
            raise AadError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        if v1:
            ident = fields.get("resource", "")
            if not ident:
                raise AadError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                )
        else:
            scope = fields.get("scope", "")
            if not scope:
                raise AadError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            wanted = [s for s in scope.split() if s not in ("openid", "profile", "offline_access")]
            if len(wanted) != 1 or not wanted[0].endswith("/.default"):
                raise AadError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows "
                    "must have a scope value with /.default suffixed to the resource identifier "
                    "(application ID URI).",
                )
            ident = wanted[0][: -len("/.default")]
        resource = find_resource(ident, self.state.urls, self.state.aliases) or other_resource(
            ident, self.state.scenario.auth.client_id
        )
        if resource is None:
            raise AadError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {ident} was not found in the tenant named {tenant}. "
                "This can happen if the application has not been installed by the administrator of "
                "the tenant or consented to by any user in the tenant. You might have sent your "
                "authentication request to the wrong tenant.",
            )
        return resource

    def _authenticate(self, request: web.Request, fields: dict[str, str]) -> None:
        auth = self.state.scenario.auth
        client = fields.get("client_id", "").lower()
        tenant = request.match_info["tenant"].lower()
        if client != auth.client_id:
            raise AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
            )
        if "client_assertion" in fields:
            self._check_assertion(request, fields)
        elif "client_secret" in fields:
            if fields["client_secret"] != auth.client_secret:
                raise AadError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is "
                    "the client secret value, not the client secret ID, for a secret added to app "
                    f"'{auth.client_id}'.",
                )
        else:
            raise AadError(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )

    def _check_assertion(self, request: web.Request, fields: dict[str, str]) -> None:
        if fields.get("client_assertion_type") != ASSERTION_TYPE:
            raise AadError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        parts = fields["client_assertion"].split(".")
        try:
            header, claims = (orjson.loads(b64decode(p)) for p in parts[:2])
            signature = b64decode(parts[2])
        except (ValueError, IndexError):
            raise AadError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from None
        self._check_signature(header, f"{parts[0]}.{parts[1]}".encode(), signature)
        self._check_claims(request, claims)

    def _check_signature(self, header: dict[str, Any], signed: bytes, signature: bytes) -> None:
        m = self.state.material
        alg = header.get("alg")
        sha1, sha256 = str(header.get("x5t", "")).rstrip("="), str(header.get("x5t#S256", "")).rstrip("=")
        if sha1 != m.thumbprint_sha1 and sha256 != m.thumbprint_sha256:
            raise AadError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. (Reason - The key was not found., "
                f"Thumbprint of key used by client: '{sha1 or sha256}'.)",
            )
        pad: padding.AsymmetricPadding
        if alg == "RS256":
            pad = padding.PKCS1v15()
        elif alg == "PS256":
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        else:
            raise AadError(
                401,
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{alg}' is not a supported signature algorithm.",
            )
        try:
            m.client_public_key.verify(signature, signed, pad, hashes.SHA256())
        except InvalidSignature:
            raise AadError(
                401, "invalid_client", 700027, "Client assertion failed signature validation."
            ) from None

    def _check_claims(self, request: web.Request, claims: dict[str, Any]) -> None:
        auth = self.state.scenario.auth
        url = f"https://{request.host}{request.path}"
        aud = claims.get("aud")
        if aud != url and not (isinstance(aud, list) and url in aud):
            raise AadError(
                401,
                "invalid_client",
                50012,
                f"Client assertion audience claim does not match Realm issuer. Expected: {url}",
            )
        if (
            str(claims.get("iss", "")).lower() != auth.client_id
            or str(claims.get("sub", "")).lower() != auth.client_id
        ):
            raise AadError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", 0))
        if (
            not isinstance(exp, int | float)
            or exp + _SKEW < now
            or (isinstance(nbf, int | float) and nbf - _SKEW > now)
        ):
            raise AadError(
                401, "invalid_client", 700024, "Client assertion is not within its valid time range."
            )
