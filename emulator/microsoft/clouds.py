"""The Microsoft host names `--impersonate` answers for, per cloud (protocols.md §5).

Each name maps to the emulator service that stands for it. `global` also carries
`login.windows.net`, the older Entra authority that ADAL-era collectors still use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

SERVICE_NAMES: Final = ("login", "graph", "management")

CLOUDS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "global": {
        "login": ("login.microsoftonline.com", "login.windows.net"),
        "graph": ("graph.microsoft.com",),
        "management": ("manage.office.com",),
    },
    "gcc": {
        "login": ("login.microsoftonline.com",),
        "graph": ("graph.microsoft.com",),
        "management": ("manage-gcc.office.com",),
    },
    "gcc-high": {
        "login": ("login.microsoftonline.us",),
        "graph": ("graph.microsoft.us",),
        "management": ("manage.office365.us",),
    },
    "dod": {
        "login": ("login.microsoftonline.us",),
        "graph": ("dod-graph.microsoft.us",),
        "management": ("manage.protection.apps.mil",),
    },
    "china": {
        "login": ("login.chinacloudapi.cn", "login.partner.microsoftonline.cn"),
        "graph": ("microsoftgraph.chinacloudapi.cn",),
        "management": ("manage.office.cn",),  # UNCONFIRMED in Microsoft's reference
    },
}


def hosts(clouds: Iterable[str]) -> dict[str, str]:
    """host name -> service, for the chosen clouds (first cloud's names first); ValueError on an unknown cloud."""
    out: dict[str, str] = {}
    for cloud in clouds:
        table = CLOUDS.get(cloud)
        if table is None:
            raise ValueError(f"unknown cloud {cloud!r}; choose from {', '.join(CLOUDS)}")
        for service in SERVICE_NAMES:
            for host in table[service]:
                out.setdefault(host, service)
    return out


def primary(clouds: Iterable[str]) -> dict[str, str]:
    """service -> its first host name in the first cloud (what the first line reports)."""
    first = next(iter(clouds), "global")
    return {service: CLOUDS[first][service][0] for service in SERVICE_NAMES}


def service_for_path(path: str) -> str:
    """Which service a path belongs to when the Host header names none we know."""
    if path.startswith("/api/"):
        return "management"
    first = path.lstrip("/").split("/", 1)[0]
    return "graph" if first in ("v1.0", "beta") else "login"
