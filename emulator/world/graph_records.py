"""Graph audit records: beta signIn (per signInEventTypes value), directoryAudit, provisioningObjectSummary.

Shapes follow the Graph resources (protocols.md §1.7) and the corpus doc samples.
"""

from __future__ import annotations

import random

from emulator.world.clock import graph_time
from emulator.world.vocabulary import (
    APPS,
    CA_POLICIES,
    CLIENT_APPS,
    DEVICES,
    FAILURES,
    PLACES,
    RESOURCES,
    Generator,
    Record,
    guid,
    ipv4,
    person,
)


def signin(event_type: str) -> Generator:
    """A beta signIn of one signInEventTypes value."""

    def make(rng: random.Random, ticks: int, tenant: str) -> Record:
        rid = guid(rng)
        app_id, app_name = rng.choice(APPS)
        res_id, res_name = rng.choice(RESOURCES)
        city, state, country, lat, lon = rng.choice(PLACES)
        os_name, browser = rng.choice(DEVICES)
        code, reason = rng.choice(FAILURES)
        human = event_type in ("interactiveUser", "nonInteractiveUser")
        uid, name, upn = person(rng) if human else ("", "", "")
        sp_id, sp_name = (guid(rng), app_name) if not human else ("", None)
        ip = "" if event_type == "managedIdentity" else ipv4(rng)
        return {
            "id": rid,
            "createdDateTime": graph_time(ticks),
            "userDisplayName": name or None,
            "userPrincipalName": upn or None,
            "userId": uid,
            "appId": app_id,
            "appDisplayName": app_name,
            "ipAddress": ip,
            "clientAppUsed": rng.choice(CLIENT_APPS) if human else None,
            "userAgent": f"Mozilla/5.0 ({os_name}) {browser}" if human else None,
            "correlationId": guid(rng),
            "conditionalAccessStatus": rng.choice(("success", "notApplied", "failure")),
            "originalRequestId": rid,
            "isInteractive": event_type == "interactiveUser",
            "tokenIssuerType": "AzureAD",
            "processingTimeInMilliseconds": rng.randrange(20, 900),
            "riskDetail": "none",
            "riskLevelAggregated": "none",
            "riskLevelDuringSignIn": "none",
            "riskState": "none",
            "riskEventTypes": [],
            "riskEventTypes_v2": [],
            "resourceDisplayName": res_name,
            "resourceId": res_id,
            "resourceTenantId": tenant,
            "homeTenantId": tenant,
            "servicePrincipalId": sp_id,
            "servicePrincipalName": sp_name,
            "signInEventTypes": [event_type],
            "uniqueTokenIdentifier": guid(rng).replace("-", "")[:22],
            "authenticationRequirement": "multiFactorAuthentication"
            if rng.random() < 0.3
            else "singleFactorAuthentication",
            "status": {"errorCode": code, "failureReason": reason or "Other.", "additionalDetails": None},
            "deviceDetail": {
                "deviceId": "",
                "displayName": None,
                "operatingSystem": os_name,
                "browser": browser,
                "isCompliant": False,
                "isManaged": False,
                "trustType": None,
            },
            "location": {
                "city": city,
                "state": state,
                "countryOrRegion": country,
                "geoCoordinates": {"altitude": None, "latitude": lat, "longitude": lon},
            },
            "appliedConditionalAccessPolicies": [
                {
                    "id": pid,
                    "displayName": pname,
                    "enforcedGrantControls": [],
                    "enforcedSessionControls": [],
                    "result": rng.choice(("notEnabled", "notApplied", "success")),
                }
                for pid, pname in CA_POLICIES[: rng.randrange(1, 4)]
            ],
            "authenticationDetails": [],
        }

    return make


_AUDIT_ACTIVITIES = (
    ("UserManagement", "Update user", "Update", "Core Directory"),
    ("UserManagement", "Add user", "Add", "Core Directory"),
    ("GroupManagement", "Add member to group", "Assign", "Core Directory"),
    ("RoleManagement", "Add member to role", "Assign", "Core Directory"),
    (
        "ApplicationManagement",
        # en dash and trailing space, as observed in real AuditLogs
        "Update application \u2013 Certificates and secrets management ",
        "Update",
        "Core Directory",
    ),
    ("UserManagement", "Reset password (self-service)", "Update", "Self-service Password Management"),
    ("Policy", "Update conditional access policy", "Update", "Conditional Access"),
)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def directory_audit(rng: random.Random, ticks: int, tenant: str) -> Record:
    """A directoryAudit; id shaped like Directory_<correlationId>_<5 chars>_<n> as observed."""
    corr = guid(rng)
    category, activity, op_type, service = rng.choice(_AUDIT_ACTIVITIES)
    uid, name, upn = person(rng)
    tid, tname, tupn = person(rng)
    result = "success" if rng.random() < 0.95 else "failure"
    suffix = "".join(rng.choice(_ALNUM) for _ in range(5))
    return {
        "id": f"Directory_{corr}_{suffix}_{rng.randrange(10_000_000, 99_999_999)}",
        "category": category,
        "correlationId": corr,
        "result": result,
        "resultReason": "" if result == "success" else "Microsoft.Online.Workflows.ObjectNotFoundException",
        "activityDisplayName": activity,
        "activityDateTime": graph_time(ticks),
        "loggedByService": service,
        "operationType": op_type,
        "userAgent": None,
        "initiatedBy": {
            "app": None,
            "user": {
                "id": uid,
                "displayName": name,
                "userPrincipalName": upn,
                "ipAddress": ipv4(rng),
                "userType": "Member",
                "homeTenantId": None,
                "homeTenantName": None,
            },
        },
        "targetResources": [
            {
                "id": tid,
                "displayName": tname,
                "type": "User",
                "userPrincipalName": tupn,
                "groupType": None,
                "modifiedProperties": [
                    {
                        "displayName": "Included Updated Properties",
                        "oldValue": None,
                        "newValue": '"StrongAuthenticationMethod"',
                    },
                    {"displayName": "TargetId.UserType", "oldValue": None, "newValue": '"Member"'},
                ],
            }
        ],
        "additionalDetails": [{"key": "UserType", "value": "Member"}],
    }


def provisioning(rng: random.Random, ticks: int, tenant: str) -> Record:
    """A provisioningObjectSummary (beta/v1.0 common fields)."""
    uid, name, upn = person(rng)
    action = rng.choice(("create", "update", "delete", "disable", "other"))
    status = "success" if rng.random() < 0.9 else "failure"
    return {
        "id": guid(rng),
        "activityDateTime": graph_time(ticks),
        "tenantId": tenant,
        "jobId": "aws.7c3f3e6d2bf14b6a8b8f5f5e4d7f2b40.0b0f5a24-0c3a-4c4f-9a7c-1d8a2f2e6b2d",
        "cycleId": guid(rng),
        "changeId": guid(rng),
        "provisioningAction": action,
        "durationInMilliseconds": rng.randrange(50, 5000),
        "initiatedBy": {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"},
        "servicePrincipal": {
            "id": "0b0f5a24-0c3a-4c4f-9a7c-1d8a2f2e6b2d",
            "displayName": "AWS Single-Account Access",
        },
        "sourceSystem": {"id": guid(rng), "displayName": "Azure Active Directory", "details": {}},
        "targetSystem": {"id": guid(rng), "displayName": "AWS Single-Account Access", "details": {}},
        "sourceIdentity": {
            "id": uid,
            "displayName": name,
            "identityType": "User",
            "details": {"UserPrincipalName": upn},
        },
        "targetIdentity": {"id": "", "displayName": "", "identityType": "User", "details": {}},
        "modifiedProperties": [{"displayName": "displayName", "oldValue": None, "newValue": name}],
        "provisioningSteps": [
            {
                "name": "EntryImport",
                "provisioningStepType": "import",
                "status": "success",
                "description": f"Retrieved {upn} from Azure Active Directory",
                "details": {},
            }
        ],
        "provisioningStatusInfo": {
            "status": status,
            "errorInformation": None
            if status == "success"
            else {
                "errorCode": "AzureActiveDirectoryDuplicateUserPrincipalName",
                "reason": "Duplicate UPN.",
                "additionalDetails": None,
                "errorCategory": "NonServiceFailure",
                "recommendedAction": None,
            },
        },
    }
