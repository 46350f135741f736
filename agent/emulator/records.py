"""Deterministic, realistic records for every stream, in the shapes Microsoft serves.

Shapes follow the Graph beta signIn / directoryAudit / provisioningObjectSummary resources and the
Management Activity common schema (protocols.md §1.7, §2.4; corpus samples). Each generator takes a
seeded `random.Random`, so a scenario seed fixes every id and value.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from typing import Any

from agent.emulator.clock import creation_time, graph_time

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
_APPS = (
    ("de8bc8b5-d9f9-48b1-a8ad-b748da725064", "Graph Explorer"),
    ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome"),
    ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office"),
    ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal"),
    ("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online"),
)
_RESOURCES = (
    ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API"),
)
_PLACES = (
    ("Redmond", "Washington", "US", 47.6805, -122.1209),
    ("Dublin", "Dublin", "IE", 53.3498, -6.2603),
    ("Paris", "Paris", "FR", 48.8566, 2.3522),
    ("Sydney", "New South Wales", "AU", -33.8688, 151.2093),
    ("Berlin", "Berlin", "DE", 52.52, 13.405),
    ("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333),
)
_DEVICES = (
    ("Windows 10", "Edge 120.0.0"),
    ("Windows 11", "Chrome 121.0.0"),
    ("MacOs", "Safari 17.2"),
    ("Ios", "Mobile Safari 17.2"),
    ("Android", "Chrome Mobile 120.0.0"),
    ("Linux", "Firefox 122.0"),
)
_FAILURES = (
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
_CA_POLICIES = (
    ("de7e60eb-ed89-4d73-8205-2227def6b7c9", "SharePoint limited access for guest workers"),
    ("6701123a-b4c6-48af-8565-565c8bf7cabc", "Medium signin risk block"),
    ("a5f8e9c1-2b3d-4e6f-8a9b-0c1d2e3f4a5b", "Require MFA for admins"),
)
_CLIENT_APPS = ("Browser", "Mobile Apps and Desktop clients", "Exchange ActiveSync", "Other clients")


def _guid(rng: random.Random) -> str:
    """A random (version 4) GUID from the seeded generator; formatted by hand because it is hot."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _ipv4(rng: random.Random) -> str:
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


def _person(rng: random.Random) -> tuple[str, str, str]:
    """(object id, display name, UPN) of one of a fixed set of users."""
    return rng.choice(_PEOPLE)


def signin(event_type: str) -> Generator:
    """A beta signIn of one signInEventTypes value."""

    def make(rng: random.Random, ticks: int, tenant: str) -> Record:
        rid = _guid(rng)
        app_id, app_name = rng.choice(_APPS)
        res_id, res_name = rng.choice(_RESOURCES)
        city, state, country, lat, lon = rng.choice(_PLACES)
        os_name, browser = rng.choice(_DEVICES)
        code, reason = rng.choice(_FAILURES)
        human = event_type in ("interactiveUser", "nonInteractiveUser")
        uid, name, upn = _person(rng) if human else ("", "", "")
        sp_id, sp_name = (_guid(rng), app_name) if not human else ("", None)
        ip = "" if event_type == "managedIdentity" else _ipv4(rng)
        return {
            "id": rid,
            "createdDateTime": graph_time(ticks),
            "userDisplayName": name or None,
            "userPrincipalName": upn or None,
            "userId": uid,
            "appId": app_id,
            "appDisplayName": app_name,
            "ipAddress": ip,
            "clientAppUsed": rng.choice(_CLIENT_APPS) if human else None,
            "userAgent": f"Mozilla/5.0 ({os_name}) {browser}" if human else None,
            "correlationId": _guid(rng),
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
            "uniqueTokenIdentifier": _guid(rng).replace("-", "")[:22],
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
                for pid, pname in _CA_POLICIES[: rng.randrange(1, 4)]
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
    corr = _guid(rng)
    category, activity, op_type, service = rng.choice(_AUDIT_ACTIVITIES)
    uid, name, upn = _person(rng)
    tid, tname, tupn = _person(rng)
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
                "ipAddress": _ipv4(rng),
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
    uid, name, upn = _person(rng)
    action = rng.choice(("create", "update", "delete", "disable", "other"))
    status = "success" if rng.random() < 0.9 else "failure"
    return {
        "id": _guid(rng),
        "activityDateTime": graph_time(ticks),
        "tenantId": tenant,
        "jobId": "aws.7c3f3e6d2bf14b6a8b8f5f5e4d7f2b40.0b0f5a24-0c3a-4c4f-9a7c-1d8a2f2e6b2d",
        "cycleId": _guid(rng),
        "changeId": _guid(rng),
        "provisioningAction": action,
        "durationInMilliseconds": rng.randrange(50, 5000),
        "initiatedBy": {"id": "", "displayName": "Azure AD Provisioning Service", "initiatorType": "system"},
        "servicePrincipal": {
            "id": "0b0f5a24-0c3a-4c4f-9a7c-1d8a2f2e6b2d",
            "displayName": "AWS Single-Account Access",
        },
        "sourceSystem": {"id": _guid(rng), "displayName": "Azure Active Directory", "details": {}},
        "targetSystem": {"id": _guid(rng), "displayName": "AWS Single-Account Access", "details": {}},
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


def _common(
    rng: random.Random,
    ticks: int,
    tenant: str,
    record_type: int,
    operation: str,
    workload: str,
    user: str,
    user_key: str,
    user_type: int,
    result: str,
) -> Record:
    return {
        "CreationTime": creation_time(ticks),
        "Id": _guid(rng),
        "Operation": operation,
        "OrganizationId": tenant,
        "RecordType": record_type,
        "ResultStatus": result,
        "UserKey": user_key,
        "UserType": user_type,
        "Version": 1,
        "Workload": workload,
    }


def aad(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.AzureActiveDirectory: STS logons (RecordType 15) and directory admin ops (8)."""
    uid, _, upn = _person(rng)
    if rng.random() < 0.7:
        ok = rng.random() < 0.85
        r = _common(
            rng,
            ticks,
            tenant,
            15,
            "UserLoggedIn" if ok else "UserLoginFailed",
            "AzureActiveDirectory",
            upn,
            uid,
            0,
            "Success" if ok else "Failed",
        )
        ip = _ipv4(rng)
        r.update(
            {
                "ClientIP": ip,
                "ObjectId": "00000003-0000-0000-c000-000000000000",
                "UserId": upn,
                "AzureActiveDirectoryEventType": 1,
                "ExtendedProperties": [
                    {"Name": "ResultStatusDetail", "Value": "Success" if ok else "UserError"},
                    {"Name": "RequestType", "Value": "OAuth2:Token"},
                ],
                "ModifiedProperties": [],
                "Actor": [{"ID": uid, "Type": 0}, {"ID": upn, "Type": 5}],
                "ActorContextId": tenant,
                "ActorIpAddress": ip,
                "InterSystemsId": _guid(rng),
                "IntraSystemId": r["Id"],
                "SupportTicketId": "",
                "Target": [{"ID": "Unknown", "Type": 0}],
                "TargetContextId": tenant,
                "ApplicationId": rng.choice(_APPS)[0],
                "ErrorNumber": "0" if ok else "50126",
                **({} if ok else {"LogonError": "InvalidUserNameOrPassword"}),
            }
        )
        return r
    r = _common(
        rng,
        ticks,
        tenant,
        8,
        rng.choice(("Add member to role.", "Update user.", "Add user.")),
        "AzureActiveDirectory",
        upn,
        f"10032002{rng.getrandbits(32):08X}@contoso.onmicrosoft.com",
        0,
        "Success",
    )
    r.update(
        {
            "ObjectId": _person(rng)[2],
            "UserId": upn,
            "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [{"Name": "additionalDetails", "Value": "{}"}],
            "ModifiedProperties": [],
            "Actor": [{"ID": upn, "Type": 5}],
            "ActorContextId": tenant,
            "InterSystemsId": _guid(rng),
            "IntraSystemId": _guid(rng),
            "SupportTicketId": "",
            "Target": [{"ID": f"User_{uid}", "Type": 2}],
            "TargetContextId": tenant,
        }
    )
    return r


def exchange(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.Exchange: admin cmdlets (RecordType 1) and mailbox access (50, ExchangeItemAggregated)."""
    _, _, upn = _person(rng)
    key = f"10032000{rng.getrandbits(32):08X}"
    if rng.random() < 0.4:
        op = rng.choice(("Set-Mailbox", "New-InboxRule", "Set-CASMailbox", "Add-MailboxPermission"))
        r = _common(rng, ticks, tenant, 1, op, "Exchange", upn, key, 2, "True")
        r.update(
            {
                "ClientIP": f"[2a09:bac5:111:105::1a:{rng.randrange(16, 255):x}]:{rng.randrange(1024, 65535)}",  # noqa: E501
                "ObjectId": _person(rng)[2],
                "UserId": upn,
                "AppId": "",
                "ClientAppId": "",
                "ExternalAccess": False,
                "OrganizationName": "contoso.onmicrosoft.com",
                "OriginatingServer": "TYUPR03MB7029 (15.20.6609.024)",
                "Parameters": [{"Name": "Identity", "Value": upn}],
                "SessionId": _guid(rng),
            }
        )
        return r
    r = _common(rng, ticks, tenant, 50, "MailItemsAccessed", "Exchange", upn, key, 0, "Succeeded")
    r.update(
        {
            "ClientIP": _ipv4(rng),
            "UserId": upn,
            "AppId": "00000002-0000-0ff1-ce00-000000000000",
            "ClientAppId": "",
            "ExternalAccess": False,
            "MailboxGuid": _guid(rng),
            "MailboxOwnerUPN": upn,
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}],
            "OrganizationName": "contoso.onmicrosoft.com",
            "OriginatingServer": "AM6PR04MB4277 (15.20.6609.024)",
            "Folders": [
                {"FolderItems": [{"InternetMessageId": f"<{_guid(rng)}@contoso.com>"}], "Path": "\\Inbox"}
            ],
            "OperationCount": 1,
        }
    )
    return r


def sharepoint(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.SharePoint: file operations (RecordType 6) and sharing (14), SharePoint or OneDrive."""
    _, _, upn = _person(rng)
    workload = rng.choice(("SharePoint", "OneDrive"))
    sharing = rng.random() < 0.2
    op = (
        rng.choice(("SharingSet", "AnonymousLinkCreated"))
        if sharing
        else rng.choice(("FileAccessed", "FileModified", "FileUploaded", "FileDownloaded", "FileDeleted"))
    )
    r = _common(
        rng,
        ticks,
        tenant,
        14 if sharing else 6,
        op,
        workload,
        upn,
        f"i:0h.f|membership|10032000{rng.getrandbits(32):08x}@live.com",
        0,
        "Succeeded",
    )
    site = "https://contoso.sharepoint.com/sites/Finance"
    name = f"Report-{rng.randrange(1, 999)}.xlsx"
    r.update(
        {
            "ClientIP": _ipv4(rng),
            "ObjectId": f"{site}/Shared Documents/{name}",
            "UserId": upn,
            "CorrelationId": _guid(rng),
            "EventSource": "SharePoint",
            "ItemType": "File",
            "ListId": _guid(rng),
            "ListItemUniqueId": _guid(rng),
            "Site": _guid(rng),
            "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "WebId": _guid(rng),
            "SourceFileExtension": "xlsx",
            "SiteUrl": f"{site}/",
            "SourceFileName": name,
            "SourceRelativeUrl": "Shared Documents",
        }
    )
    return r


def general(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.General: every other workload; here Microsoft Teams (RecordType 25)."""
    uid, _, upn = _person(rng)
    op = rng.choice(("TeamsSessionStarted", "MemberAdded", "ChannelAdded", "MessageSent"))
    r = _common(rng, ticks, tenant, 25, op, "MicrosoftTeams", upn, uid, 0, "Succeeded")
    r.update(
        {
            "ClientIP": _ipv4(rng),
            "UserId": upn,
            "CommunicationType": "Team",
            "Members": [{"DisplayName": _person(rng)[1], "Role": 1, "UPN": _person(rng)[2]}],
            "TeamGuid": f"19:{_guid(rng).replace('-', '')}@thread.tacv2",
            "TeamName": "Finance",
            "ItemName": "General",
        }
    )
    return r


def dlp(rng: random.Random, ticks: int, tenant: str) -> Record:
    """DLP.All: DLP rule matches in SharePoint (11) and Exchange (13); UserKey is DlpAgent."""
    _, _, upn = _person(rng)
    exo = rng.random() < 0.5
    r = _common(
        rng,
        ticks,
        tenant,
        13 if exo else 11,
        "DlpRuleMatch",
        "Exchange" if exo else "SharePoint",
        upn,
        "DlpAgent",
        4,
        "Success",
    )
    r.update(
        {
            "ObjectId": f"<{_guid(rng)}@contoso.com>"
            if exo
            else "https://contoso.sharepoint.com/sites/Finance/Shared Documents/cards.xlsx",
            "UserId": upn,
            "IncidentId": _guid(rng),
            "PolicyDetails": [
                {
                    "PolicyId": _guid(rng),
                    "PolicyName": "U.S. Financial Data",
                    "Rules": [
                        {
                            "RuleId": _guid(rng),
                            "RuleName": "Low volume of content detected",
                            "Severity": "Low",
                            "Actions": ["NotifyUser"],
                            "ConditionsMatched": {
                                "SensitiveInformation": [
                                    {
                                        "SensitiveType": "50842eb7-edc8-4019-85dd-5a5c1f2bb085",
                                        "Count": rng.randrange(1, 9),
                                        "Confidence": 85,
                                    }
                                ]
                            },
                        }
                    ],
                }
            ],
            "SensitiveInfoDetectionIsIncluded": False,
        }
    )
    return r


GENERATORS: dict[str, Generator] = {
    "graph.signins.interactive": signin("interactiveUser"),
    "graph.signins.noninteractive": signin("nonInteractiveUser"),
    "graph.signins.serviceprincipal": signin("servicePrincipal"),
    "graph.signins.managedidentity": signin("managedIdentity"),
    "graph.directory_audits": directory_audit,
    "graph.provisioning": provisioning,
    "o365.azure_active_directory": aad,
    "o365.exchange": exchange,
    "o365.sharepoint": sharepoint,
    "o365.general": general,
    "o365.dlp_all": dlp,
}
