"""Entra instance discovery: `GET /common/discovery/instance`, which MSAL (Python, .NET, JS, Java)
calls before anything else for an authority it does not know, and for its authority aliases.

Shape as the real endpoint answers (MSAL's `authority.py` reads `tenant_discovery_endpoint` and
`metadata[].aliases`; an unknown host is `400 invalid_instance`, AADSTS50049). The emulator's own
login URL and every login host it impersonates count as known instances.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# Microsoft's login host groups (aliases that share tokens), as the public endpoint lists them.
MICROSOFT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"),
    ("login.partner.microsoftonline.cn", "login.chinacloudapi.cn"),
    ("login.microsoftonline.de",),
    ("login.microsoftonline.us", "login.usgovcloudapi.net"),
    ("login-us.microsoftonline.com",),
)


def metadata(own_hosts: list[str]) -> list[dict[str, object]]:
    """`metadata`: Microsoft's groups, plus one for the emulator's own (non-Microsoft) login host."""
    known = {h for group in MICROSOFT_GROUPS for h in group}
    names = {h.rsplit(":", 1)[0] if not h.startswith("[") else h for h in own_hosts}  # aliases are host names
    groups = [list(g) for g in MICROSOFT_GROUPS] + [[h] for h in sorted(names) if h not in known]
    return [{"preferred_network": g[0], "preferred_cache": g[0], "aliases": g} for g in groups]


def answer(authorization_endpoint: str, api_version: str, own_hosts: list[str]) -> dict[str, object] | None:
    """The discovery document for `authorization_endpoint`, or None when its host is unknown.

    `own_hosts` are the emulator's login netlocs (host[:port]). MSAL sends the authority's host
    without its port, so a host name matching one of them is answered with that netloc: the
    `tenant_discovery_endpoint` must lead back to the emulator."""
    parts = urlsplit(authorization_endpoint)
    host = (parts.hostname or "").lower()
    netloc = {h.lower().rsplit(":", 1)[0] if not h.startswith("[") else h.lower(): h for h in own_hosts}
    netloc.update({h: h for group in MICROSOFT_GROUPS for h in group if h not in netloc})
    if parts.scheme != "https" or host not in netloc:
        return None
    where = netloc[host] if parts.port is None else parts.netloc
    segments = [s for s in parts.path.split("/") if s]
    tenant = segments[0] if segments else "common"
    v2 = "/v2.0" if "v2.0" in segments else ""
    doc: dict[str, object] = {
        "tenant_discovery_endpoint": f"https://{where}/{tenant}{v2}/.well-known/openid-configuration",
        "api-version": api_version or "1.0",
    }
    if api_version != "1.0":
        doc["metadata"] = metadata(own_hosts)
    return doc
