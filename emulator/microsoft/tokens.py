"""Access tokens: JWT-shaped, HMAC-signed with a per-run key, bound to one tenant and one audience.

The resource table maps every identifier a client may ask for (the real resource URI, its app id
GUID, or this emulator's own base URL for that service) to the service that will accept the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from emulator.world.clock import TICKS_PER_SECOND, now_ticks


@dataclass(frozen=True)
class Resource:
    service: str  # "graph", "management", "loganalytics", "ingestion"; "other": accepted by none
    audience: str  # the `aud` claim Microsoft would put in the token
    aliases: tuple[str, ...]
    roles: tuple[str, ...]


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "graph",
        "https://graph.microsoft.com",
        ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"),
        ("AuditLog.Read.All", "Directory.Read.All", "ServiceHealth.Read.All", "ServiceMessage.Read.All",
         "SecurityAlert.Read.All", "SecurityIncident.Read.All"),
    ),
    Resource(
        "management",
        "https://manage.office.com",
        ("https://manage.office.com", "c5393580-f805-4401-95e8-94b7a6ef2fc2"),
        ("ActivityFeed.Read", "ActivityFeed.ReadDlp", "ServiceHealth.Read"),
    ),
    Resource(
        "loganalytics",
        "https://api.loganalytics.io",
        (
            "https://api.loganalytics.io",
            "https://api.loganalytics.azure.com",
            "ca7f3f0b-7d91-482c-8e09-c5d840d0eac5",
        ),
        ("Data.Read",),
    ),
    Resource("ingestion", "https://monitor.azure.com", ("https://monitor.azure.com",), ()),
)


def find_resource(
    identifier: str, own_urls: Mapping[str, str], extra: Mapping[str, Sequence[str]] | None = None
) -> Resource | None:
    """The resource named by a v1 `resource` or a v2 scope without `/.default` (trailing '/' tolerated).

    `extra` maps a service to further identifiers it answers for (the national-cloud host URLs
    under `--impersonate`, e.g. https://graph.microsoft.us)."""
    wanted = identifier.strip().rstrip("/").lower()
    for r in RESOURCES:
        names = {a.lower() for a in r.aliases}
        own = own_urls.get(r.service)
        if own:
            names.add(own.rstrip("/").lower())
        names.update(a.rstrip("/").lower() for a in (extra or {}).get(r.service, ()))
        if wanted in names:
            return r
    return None


# Microsoft first-party resources whose service principals every tenant has, so the real login issues
# an app-only token for them to any registered app (what the app may then do is the API's business:
# without a role its calls get 401/403 there). No emulated API accepts these tokens. A name outside
# this list and not one of the app's own identifiers is AADSTS500011, as for a resource the tenant
# does not have.
FIRST_PARTY: tuple[str, ...] = (
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://vault.azure.net",
    "https://storage.azure.com",
    "https://database.windows.net",
    "https://servicebus.azure.net",
    "https://eventhubs.azure.net",
    "https://datalake.azure.net",
    "https://kusto.kusto.windows.net",
    "https://api.applicationinsights.io",
    "https://graph.windows.net",
    "https://outlook.office365.com",
    "https://outlook.office.com",
    "https://ps.compliance.protection.outlook.com",
    "https://api.securitycenter.microsoft.com",
    "https://api.security.microsoft.com",
    "https://securitycenter.onmicrosoft.com/windowsatpservice",
    "https://analysis.windows.net/powerbi/api",
    "https://purview.azure.net",
)
# Per-tenant hosts of first-party services (SharePoint sites, Kusto clusters, key vaults).
_FIRST_PARTY_SUFFIXES = (".sharepoint.com", ".kusto.windows.net", ".vault.azure.net")


def other_resource(identifier: str, client_id: str) -> Resource | None:
    """A token audience the real login would honour although no emulated API accepts it: a
    Microsoft first-party resource, or the app itself (`{client_id}`, `api://{client_id}`)."""
    wanted = identifier.strip().rstrip("/")
    low = wanted.lower()
    host = low.removeprefix("https://").split("/", 1)[0]
    own = {client_id.lower(), f"api://{client_id.lower()}"}
    if low in own or low in FIRST_PARTY or (low.startswith("https://") and host.endswith(_FIRST_PARTY_SUFFIXES)):
        return Resource("other", wanted, (wanted,), ())
    return None


def credentials(header: str | None, scheme: str) -> str | None:
    """The credentials after `scheme` in an Authorization header, or None when another scheme (or
    none) is used. The scheme is matched case-insensitively and may be followed by several spaces:
    RFC 9110 §11.1 ("auth-scheme is a case-insensitive token") and §11.4
    (`credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`); real clients send
    `bearer`, `BEARER` and `Bearer` alike, and Microsoft's services accept all of them."""
    if not header:
        return None
    name, _, rest = header.strip().partition(" ")
    if name.lower() != scheme.lower():
        return None
    return rest.strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64decode(text: str) -> bytes:
    """base64url with or without padding (MSAL pads x5t; JWT segments are unpadded)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Claims:
    tenant: str
    app: str
    service: str
    expires: int  # ticks


class TokenIssuer:
    """Issues and checks this run's access tokens."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def issue(self, tenant: str, app: str, resource: Resource, lifetime: int) -> tuple[str, int]:
        """A signed token and its exp (unix seconds)."""
        now = now_ticks() // TICKS_PER_SECOND
        exp = now + lifetime // TICKS_PER_SECOND
        claims = {
            "aud": resource.audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "appid": app,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid4()),
            "roles": list(resource.roles),
            "sub": app,
            "tid": tenant,
            "ver": "1.0",
            "xms_svc": resource.service,
            "uti": secrets.token_urlsafe(16),
        }
        head = _b64(orjson.dumps({"typ": "JWT", "alg": "HS256", "kid": "emulator"}))
        body = _b64(orjson.dumps(claims))
        sig = _b64(hmac.new(self._key, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}", exp

    def check(self, header: str | None, service: str) -> Claims | str:
        """Claims of a valid token for `service`, or the reason it is refused (Graph's messages)."""
        token = credentials(header, "Bearer")
        if not token:
            return "Access token is empty."
        parts = token.split(".")
        if len(parts) != 3:
            return "IDX14100: JWT is not well formed, there are no dots (.)."
        expected = _b64(hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return "Invalid signature."
        try:
            claims = orjson.loads(b64decode(parts[1]))
        except ValueError:
            return "Access token validation failure."
        if claims.get("xms_svc") != service:
            return "Invalid audience."
        if claims["exp"] * TICKS_PER_SECOND <= now_ticks():
            return "Lifetime validation failed, the token is expired."
        return Claims(
            tenant=claims["tid"],
            app=claims["appid"],
            service=service,
            expires=claims["exp"] * TICKS_PER_SECOND,
        )
