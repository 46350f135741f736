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

from agent.emulator.clock import TICKS_PER_SECOND, now_ticks


@dataclass(frozen=True)
class Resource:
    service: str  # "graph", "management", "loganalytics", "ingestion"
    audience: str  # the `aud` claim Microsoft would put in the token
    aliases: tuple[str, ...]
    roles: tuple[str, ...]


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "graph",
        "https://graph.microsoft.com",
        ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"),
        ("AuditLog.Read.All", "Directory.Read.All", "ServiceHealth.Read.All", "ServiceMessage.Read.All"),
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
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return "Access token is empty."
        token = header[7:].strip()
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
