"""Microsoft's fan-out: one Entra event reaches Graph and, through Entra's event hubs, the unified
audit log (Management Activity `Audit.AzureActiveDirectory`), so sibling records derive from one
event instead of being drawn independently (docs/emulator.md, "Sibling pipelines").

Evidence for each mapping (docs/triangulation.md has the full table):
- Graph directoryAudit -> UAL RecordType 8 (AzureActiveDirectory): `InterSystemsId` = Graph
  `correlationId`, `Operation` = `activityDisplayName` + ".", the same second (3/3 comparable pairs in
  Splunk attack_data; medium confidence). The UAL `Id` and `IntraSystemId` are its own GUIDs.
- Graph interactive signIn -> UAL RecordType 15 (AzureActiveDirectoryStsLogon): `Id == IntraSystemId`
  (24/25 corpus records, high) and `IntraSystemId` = the Graph signIn `id` (practitioners' claim, no
  published matched pair: low-medium). The UAL holds only a subset of sign-ins
  (MicrosoftDocs/microsoft-365-docs#1255); the common understanding, modelled here, is that the
  subset is the interactive ones (UserLoggedIn / UserLoginFailed), so non-interactive, service
  principal and managed identity sign-ins have no UAL sibling.
- `UserKey` of RecordType 15 is the Entra user object GUID (= Graph `userId`, corpus README).

`[[upstream.gaps]]` then removes records from one pipeline before its API serves them; the sibling
keeps its copy, which is what `agent triangulate` must notice.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from emulator.world.clock import creation_time
from emulator.world.vocabulary import Record, guid

AUDIT_STREAM = "o365.azure_active_directory"
# Graph stream -> the UAL RecordType its events become.
SIBLING_TYPES: dict[str, int] = {"graph.directory_audits": 8, "graph.signins.interactive": 15}


def from_directory_audit(rng: random.Random, audit: dict[str, Any], ticks: int, tenant: str) -> Record:
    """The RecordType 8 record of one Graph directoryAudit."""
    user = (audit.get("initiatedBy") or {}).get("user") or {}
    target = (audit.get("targetResources") or [{}])[0]
    upn = user.get("userPrincipalName") or ""
    ok = audit.get("result") == "success"
    return {
        "CreationTime": creation_time(ticks),
        "Id": guid(rng),
        "Operation": f"{audit['activityDisplayName']}.",
        "OrganizationId": tenant,
        "RecordType": 8,
        "ResultStatus": "Success" if ok else "Failure",
        "UserKey": f"10032002{rng.getrandbits(32):08X}@contoso.onmicrosoft.com",
        "UserType": 0,
        "Version": 1,
        "Workload": "AzureActiveDirectory",
        "ObjectId": target.get("userPrincipalName") or "",
        "UserId": upn,
        "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": [{"Name": "additionalDetails", "Value": "{}"}],
        "ModifiedProperties": [],
        "Actor": [{"ID": upn, "Type": 5}],
        "ActorContextId": tenant,
        "InterSystemsId": audit["correlationId"],
        "IntraSystemId": guid(rng),
        "SupportTicketId": "",
        "Target": [{"ID": f"User_{target.get('id', '')}", "Type": 2}],
        "TargetContextId": tenant,
    }


def from_signin(rng: random.Random, signin: dict[str, Any], ticks: int, tenant: str) -> Record:
    """The RecordType 15 record of one interactive Graph signIn."""
    status = signin.get("status") or {}
    ok = status.get("errorCode", 0) == 0
    ip = signin.get("ipAddress") or ""
    upn = signin.get("userPrincipalName") or ""
    uid = signin.get("userId") or ""
    record: Record = {
        "CreationTime": creation_time(ticks),
        "Id": signin["id"],
        "Operation": "UserLoggedIn" if ok else "UserLoginFailed",
        "OrganizationId": tenant,
        "RecordType": 15,
        "ResultStatus": "Success" if ok else "Failed",
        "UserKey": uid,
        "UserType": 0,
        "Version": 1,
        "Workload": "AzureActiveDirectory",
        "ClientIP": ip,
        "ObjectId": signin.get("resourceId") or "",
        "UserId": upn,
        "AzureActiveDirectoryEventType": 1,
        "ExtendedProperties": [
            {"Name": "ResultStatusDetail", "Value": "Success" if ok else "UserError"},
            {"Name": "RequestType", "Value": "OAuth2:Authorize"},
        ],
        "ModifiedProperties": [],
        "Actor": [{"ID": uid, "Type": 0}, {"ID": upn, "Type": 5}],
        "ActorContextId": tenant,
        "ActorIpAddress": ip,
        "InterSystemsId": guid(rng),  # = Graph correlationId is not established: drawn
        "IntraSystemId": signin["id"],
        "SupportTicketId": "",
        "Target": [{"ID": "Unknown", "Type": 0}],
        "TargetContextId": tenant,
        "ApplicationId": signin.get("appId") or "",
        "ErrorNumber": str(status.get("errorCode", 0)),
    }
    if not ok:
        record["LogonError"] = status.get("failureReason") or "Other."
    return record


def record_type(body: bytes) -> Any:
    """RecordType of a serialized UAL record (None if it has none)."""
    return orjson.loads(body).get("RecordType")
