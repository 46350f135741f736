"""Defender alerts (`microsoft.graph.security.alert`) and incidents (`microsoft.graph.security.incident`).

Shapes follow the v1.0 examples of "List alerts_v2" and "List incidents" (microsoft-graph-docs-contrib
api-reference/v1.0/api/security-list-alerts_v2.md, security-list-incidents.md): alert ids like
`da637551227677560813_-961444813`, numeric incident ids as strings, camelCase enum values,
7-digit fractions. A later version of a record is the same object with its status, classification,
assignment and `lastUpdateDateTime` changed, as an analyst's triage changes them.
"""

from __future__ import annotations

import random
from typing import Any

from emulator.world.clock import graph_time
from emulator.world.vocabulary import Generator, Record, guid, person

_SERVICES = (
    ("microsoftDefenderForEndpoint", "antivirus", "DefenseEvasion", "Suspicious execution of hidden file"),
    ("microsoftDefenderForIdentity", "microsoftDefenderForIdentity", "CredentialAccess",
     "Suspected brute-force attack (LDAP)"),
    ("microsoftDefenderForOffice365", "microsoftDefenderForOffice365", "InitialAccess",
     "Email messages containing malicious URL removed after delivery"),
    ("microsoftDefenderForCloudApps", "microsoftDefenderForCloudApps", "Exfiltration",
     "Mass download by a single user"),
    ("microsoftDefenderForCloud", "microsoftDefenderForCloud", "Execution", "Suspicious process executed"),
)
_SEVERITIES = ("informational", "low", "medium", "high")
_TECHNIQUES = ("T1564.001", "T1110", "T1566.002", "T1530", "T1059")


def _alert_id(rng: random.Random) -> str:
    return f"da{rng.randrange(10**17, 10**18)}_{rng.randrange(-2**31, 2**31)}"


def alert(rng: random.Random, ticks: int, tenant: str) -> Record:
    """A new alert (first version: status new, nothing triaged)."""
    rid = _alert_id(rng)
    service, detection, category, title = rng.choice(_SERVICES)
    incident = str(rng.randrange(1000, 99999))
    when = graph_time(ticks)
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": rid,
        "providerAlertId": rid,
        "incidentId": incident,
        "status": "new",
        "severity": rng.choice(_SEVERITIES),
        "classification": "unknown",
        "determination": "unknown",
        "serviceSource": service,
        "detectionSource": detection,
        "detectorId": guid(rng),
        "tenantId": tenant,
        "title": title,
        "description": f"{title}. This activity could indicate a compromised host or account.",
        "recommendedActions": "Collect artifacts and determine scope.",
        "category": category,
        "assignedTo": None,
        "alertWebUrl": f"https://security.microsoft.com/alerts/{rid}?tid={tenant}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{incident}?tid={tenant}",
        "actorDisplayName": None,
        "threatDisplayName": None,
        "threatFamilyName": None,
        "mitreTechniques": [rng.choice(_TECHNIQUES)],
        "createdDateTime": when,
        "lastUpdateDateTime": when,
        "resolvedDateTime": None,
        "firstActivityDateTime": when,
        "lastActivityDateTime": when,
        "comments": [],
        "evidence": [],
        "systemTags": [],
    }


def incident(rng: random.Random, ticks: int, tenant: str) -> Record:
    """A new incident (first version: active, unassigned)."""
    rid = str(rng.randrange(100000, 9999999))
    _service, _detection, category, title = rng.choice(_SERVICES)
    when = graph_time(ticks)
    return {
        "@odata.type": "#microsoft.graph.security.incident",
        "id": rid,
        "incidentWebUrl": f"https://security.microsoft.com/incidents/{rid}?tid={tenant}",
        "redirectIncidentId": None,
        "tenantId": tenant,
        "displayName": f"{category} incident involving '{title}'",
        "createdDateTime": when,
        "lastUpdateDateTime": when,
        "assignedTo": None,
        "classification": "unknown",
        "determination": "unknown",
        "status": "active",
        "severity": rng.choice(_SEVERITIES),
        "customTags": [],
        "comments": [],
        "systemTags": [],
        "description": f"Microsoft correlated alerts of '{title}' into one incident.",
    }


def update(record: Record, rng: random.Random, ticks: int) -> Record:
    """The record's next version: triaged at `ticks` (same keys, changed values)."""
    out: dict[str, Any] = dict(record)
    _uid, _name, upn = person(rng)
    resolved = rng.random() < 0.5
    out["assignedTo"] = upn
    out["lastUpdateDateTime"] = graph_time(ticks)
    if resolved:
        out["classification"], out["determination"] = rng.choice(
            (("truePositive", "malware"), ("falsePositive", "notMalicious"), ("informationalExpectedActivity",
                                                                                 "securityTesting")))
    if "providerAlertId" in record:
        out["status"] = "resolved" if resolved else "inProgress"
        out["resolvedDateTime"] = graph_time(ticks) if resolved else None
    else:
        out["status"] = "resolved" if resolved else "active"
    return out


GENERATORS: dict[str, Generator] = {"graph.security_alerts": alert, "graph.security_incidents": incident}
