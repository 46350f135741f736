"""Management Activity audit records per content type (common schema, protocols.md §2.4).

`CreationTime` has no zone and no fraction; RecordType/Workload/Operation match the content type.
"""

from __future__ import annotations

import random

from emulator.world.clock import creation_time
from emulator.world.vocabulary import APPS, Record, guid, ipv4, person


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
        "Id": guid(rng),
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
    uid, _, upn = person(rng)
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
        ip = ipv4(rng)
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
                "InterSystemsId": guid(rng),
                "IntraSystemId": r["Id"],
                "SupportTicketId": "",
                "Target": [{"ID": "Unknown", "Type": 0}],
                "TargetContextId": tenant,
                "ApplicationId": rng.choice(APPS)[0],
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
            "ObjectId": person(rng)[2],
            "UserId": upn,
            "AzureActiveDirectoryEventType": 1,
            "ExtendedProperties": [{"Name": "additionalDetails", "Value": "{}"}],
            "ModifiedProperties": [],
            "Actor": [{"ID": upn, "Type": 5}],
            "ActorContextId": tenant,
            "InterSystemsId": guid(rng),
            "IntraSystemId": guid(rng),
            "SupportTicketId": "",
            "Target": [{"ID": f"User_{uid}", "Type": 2}],
            "TargetContextId": tenant,
        }
    )
    return r


def exchange(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.Exchange: admin cmdlets (RecordType 1) and mailbox access (50, ExchangeItemAggregated)."""
    _, _, upn = person(rng)
    key = f"10032000{rng.getrandbits(32):08X}"
    if rng.random() < 0.4:
        op = rng.choice(("Set-Mailbox", "New-InboxRule", "Set-CASMailbox", "Add-MailboxPermission"))
        r = _common(rng, ticks, tenant, 1, op, "Exchange", upn, key, 2, "True")
        r.update(
            {
                "ClientIP": f"[2a09:bac5:111:105::1a:{rng.randrange(16, 255):x}]:{rng.randrange(1024, 65535)}",
                "ObjectId": person(rng)[2],
                "UserId": upn,
                "AppId": "",
                "ClientAppId": "",
                "ExternalAccess": False,
                "OrganizationName": "contoso.onmicrosoft.com",
                "OriginatingServer": "TYUPR03MB7029 (15.20.6609.024)",
                "Parameters": [{"Name": "Identity", "Value": upn}],
                "SessionId": guid(rng),
            }
        )
        return r
    r = _common(rng, ticks, tenant, 50, "MailItemsAccessed", "Exchange", upn, key, 0, "Succeeded")
    r.update(
        {
            "ClientIP": ipv4(rng),
            "UserId": upn,
            "AppId": "00000002-0000-0ff1-ce00-000000000000",
            "ClientAppId": "",
            "ExternalAccess": False,
            "MailboxGuid": guid(rng),
            "MailboxOwnerUPN": upn,
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}],
            "OrganizationName": "contoso.onmicrosoft.com",
            "OriginatingServer": "AM6PR04MB4277 (15.20.6609.024)",
            "Folders": [
                {"FolderItems": [{"InternetMessageId": f"<{guid(rng)}@contoso.com>"}], "Path": "\\Inbox"}
            ],
            "OperationCount": 1,
        }
    )
    return r


def sharepoint(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.SharePoint: file operations (RecordType 6) and sharing (14), SharePoint or OneDrive."""
    _, _, upn = person(rng)
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
            "ClientIP": ipv4(rng),
            "ObjectId": f"{site}/Shared Documents/{name}",
            "UserId": upn,
            "CorrelationId": guid(rng),
            "EventSource": "SharePoint",
            "ItemType": "File",
            "ListId": guid(rng),
            "ListItemUniqueId": guid(rng),
            "Site": guid(rng),
            "UserAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "WebId": guid(rng),
            "SourceFileExtension": "xlsx",
            "SiteUrl": f"{site}/",
            "SourceFileName": name,
            "SourceRelativeUrl": "Shared Documents",
        }
    )
    return r


def general(rng: random.Random, ticks: int, tenant: str) -> Record:
    """Audit.General: every other workload; here Microsoft Teams (RecordType 25)."""
    uid, _, upn = person(rng)
    op = rng.choice(("TeamsSessionStarted", "MemberAdded", "ChannelAdded", "MessageSent"))
    r = _common(rng, ticks, tenant, 25, op, "MicrosoftTeams", upn, uid, 0, "Succeeded")
    r.update(
        {
            "ClientIP": ipv4(rng),
            "UserId": upn,
            "CommunicationType": "Team",
            "Members": [{"DisplayName": person(rng)[1], "Role": 1, "UPN": person(rng)[2]}],
            "TeamGuid": f"19:{guid(rng).replace('-', '')}@thread.tacv2",
            "TeamName": "Finance",
            "ItemName": "General",
        }
    )
    return r


def dlp(rng: random.Random, ticks: int, tenant: str) -> Record:
    """DLP.All: DLP rule matches in SharePoint (11) and Exchange (13); UserKey is DlpAgent."""
    _, _, upn = person(rng)
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
            "ObjectId": f"<{guid(rng)}@contoso.com>"
            if exo
            else "https://contoso.sharepoint.com/sites/Finance/Shared Documents/cards.xlsx",
            "UserId": upn,
            "IncidentId": guid(rng),
            "PolicyDetails": [
                {
                    "PolicyId": guid(rng),
                    "PolicyName": "U.S. Financial Data",
                    "Rules": [
                        {
                            "RuleId": guid(rng),
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
