"""The `$filter` subset (protocols.md §1.3)."""

from __future__ import annotations

import pytest

from emulator.microsoft import odata
from emulator.world.clock import parse_iso


def test_event_type_and_window() -> None:
    f = odata.parse(
        "signInEventTypes/any(t: t eq 'nonInteractiveUser') and createdDateTime ge "
        "2026-10-05T10:00:00Z and createdDateTime le 2026-10-05T11:00:00.1234567Z",
        "createdDateTime",
        event_types=True,
    )
    assert f.event_types == {"nonInteractiveUser"}
    assert f.lo == parse_iso("2026-10-05T10:00:00Z")
    assert f.hi == parse_iso("2026-10-05T11:00:00.1234567Z")


def test_strict_bounds_and_parentheses() -> None:
    f = odata.parse(
        "(activityDateTime gt 2026-10-05T10:00:00Z) and activityDateTime lt 2026-10-05T11:00:00Z",
        "activityDateTime",
        event_types=False,
    )
    assert f.lo == parse_iso("2026-10-05T10:00:00Z") + 1
    assert f.hi == parse_iso("2026-10-05T11:00:00Z") - 1


def test_or_inside_any_and_ne() -> None:
    f = odata.parse(
        "signInEventTypes/any(t: t eq 'servicePrincipal' or t eq 'managedIdentity')",
        "createdDateTime",
        event_types=True,
    )
    assert f.event_types == {"servicePrincipal", "managedIdentity"}
    f = odata.parse("signInEventTypes/any(t: t ne 'interactiveUser')", "createdDateTime", event_types=True)
    assert "interactiveUser" not in (f.event_types or set())


@pytest.mark.parametrize(
    "text",
    [
        "createdDateTime ge '2026-10-05T10:00:00Z'",  # quoted timestamp
        "createdDateTime ge 2026-10-05T10:00:00",  # no zone
        "createdDateTime ge 2026-10-05T10:00:00Z or createdDateTime le 2026-10-06T10:00:00Z",
        "userPrincipalName eq 'x@y'",  # outside the subset
        "createdDateTime ge",
        "createdDateTime foo 2026-10-05T10:00:00Z",
        "signInEventTypes/any(t: t eq 'bogus')",
    ],
)
def test_rejected(text: str) -> None:
    with pytest.raises(odata.FilterError):
        odata.parse(text, "createdDateTime", event_types=True)


def test_event_types_only_where_documented() -> None:
    with pytest.raises(odata.FilterError, match="signInEventTypes"):
        odata.parse("signInEventTypes/any(t: t eq 'interactiveUser')", "createdDateTime", event_types=False)
