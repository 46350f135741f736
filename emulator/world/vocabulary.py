"""Seeded building blocks shared by the record generators: GUIDs, IPs, a fixed cast of users and apps."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]
Generator = Callable[[random.Random, int, str], Record]

_FIRST = (
    "Adele",
    "Alex",
    "Diego",
    "Grady",
    "Henrietta",
    "Isaiah",
    "Johanna",
    "Lee",
    "Lidia",
    "Lynne",
    "Megan",
    "Miriam",
    "Nestor",
    "Patti",
    "Pradeep",
    "Joni",
    "Irvin",
    "Enrico",
    "Christie",
    "Allan",
)
_LAST = ("Vance", "Wilber", "Siciliani", "Archie", "Mueller", "Langer", "Gu", "Holt", "Cline", "Smith")
APPS = (
    ("de8bc8b5-d9f9-48b1-a8ad-b748da725064", "Graph Explorer"),
    ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome"),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office"),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal"),
    ("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online"),
)
RESOURCES = (
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API"),
)
PLACES = (
    ("Redmond", "Washington", "US", 47.6805, -122.1209),
    ("Dublin", "Dublin", "IE", 53.3498, -6.2603),
    ("Paris", "Paris", "FR", 48.8566, 2.3522),
    ("Sydney", "New South Wales", "AU", -33.8688, 151.2093),
    ("Berlin", "Berlin", "DE", 52.52, 13.405),
    ("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333),
)
DEVICES = (
    ("Windows 10", "Edge 120.0.0"),
    ("Windows 11", "Chrome 121.0.0"),
    ("MacOs", "Safari 17.2"),
    ("Ios", "Mobile Safari 17.2"),
    ("Android", "Chrome Mobile 120.0.0"),
    ("Linux", "Firefox 122.0"),
)
FAILURES = (
    (0, None),
    (0, None),
    (0, None),
    (0, None),
    (0, None),
    (0, None),
    (50126, "Error validating credentials due to invalid username or password."),
    (50074, "Strong Authentication is required."),
    (50140, "This error occurred due to 'Keep me signed in' interrupt when the user was signing in."),
    (53003, "Access has been blocked by Conditional Access policies."),
)
CA_POLICIES = (
    ("de7e60eb-ed89-4d73-8205-2227def6b7c9", "SharePoint limited access for guest workers"),
    ("6701123a-b4c6-48af-8565-565c8bf7cabc", "Medium signin risk block"),
    ("a5f8e9c1-2b3d-4e6f-8a9b-0c1d2e3f4a5b", "Require MFA for admins"),
)
CLIENT_APPS = ("Browser", "Mobile Apps and Desktop clients", "Exchange ActiveSync", "Other clients")


def guid(rng: random.Random) -> str:
    """A random (version 4) GUID from the seeded generator; formatted by hand because it is hot."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def ipv4(rng: random.Random) -> str:
    first = rng.choice((20, 40, 52, 104, 131, 157, 185))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def user_id(first: str, last: str) -> str:
    """A stable user object id per name, so the same user keeps one id across records."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{first}.{last}.contoso"))


_PEOPLE = tuple(
    (user_id(f, la), f"{f} {la}", f"{f.lower()}.{la.lower()}@contoso.onmicrosoft.com")
    for f in _FIRST
    for la in _LAST
)


def person(rng: random.Random) -> tuple[str, str, str]:
    """(object id, display name, UPN) of one of a fixed set of users."""
    return rng.choice(_PEOPLE)
