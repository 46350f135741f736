"""The documents of the emulated Elasticsearch: the SIEM copy's rows shaped the way the
elastic/integrations pipelines store them (corpus/siem/elastic), one data stream per dataset, with
the `_id` rules that make o365 and Defender duplicates overwrite while azure ones stay.

Sign-ins in `logs-azure.signinlogs-default` with `event.id` = the Graph id and the category in
`azure.signinlogs.category`; directory audits in `logs-azure.auditlogs-default` with the id only at
`azure.auditlogs.properties.id`; Management Activity in `logs-o365.audit-default` with `event.id` =
`Id` while `_id` is a fingerprint (so a client reading `_id` gets it wrong, as in reality).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from emulator.siems.siem_copy import SiemCopy
from emulator.world import jsontext

_CATEGORIES = {"graph.signins.interactive": "SignInLogs",
               "graph.signins.noninteractive": "NonInteractiveUserSignInLogs",
               "graph.signins.serviceprincipal": "ServicePrincipalSignInLogs",
               "graph.signins.managedidentity": "ManagedIdentitySignInLogs"}
_DEFENDER = {"graph.security_alerts": "alert", "graph.security_incidents": "incident"}
_RECORD_NAMES = {1: "ExchangeAdmin", 4: "SharePoint", 6: "SharePointFileOperation", 8: "AzureActiveDirectory",
                 11: "ComplianceDLPSharePoint", 13: "ComplianceDLPExchange", 14: "SharePointSharingOperation",
                 15: "AzureActiveDirectoryStsLogon", 25: "MicrosoftTeams", 50: "ExchangeItemAggregated"}


def timestamp(ticks: int) -> str:
    """`@timestamp` text (UTC, milliseconds) of a time in ticks."""
    ms = ticks // 10_000
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def signin_doc(rec: dict[str, Any], tenant: str, stream: str, ticks: int) -> dict[str, Any]:
    status = rec.get("status") or {}
    code = status.get("errorCode", 0)
    return {"@timestamp": timestamp(ticks), "data_stream": {"dataset": "azure.signinlogs", "namespace": "default",
                                                      "type": "logs"},
            "event": {"id": rec.get("id"), "action": "Sign-in activity", "category": ["authentication"],
                      "kind": "event", "dataset": "azure.signinlogs", "outcome": "success" if code == 0 else "failure"},
            "azure": {"tenant_id": tenant, "correlation_id": rec.get("correlationId"),
                      "signinlogs": {"category": _CATEGORIES[stream], "operation_name": "Sign-in activity",
                                     "result_type": str(code),
                                     "properties": {"id": rec.get("id"), "app_display_name": rec.get("appDisplayName"),
                                                    "user_principal_name": rec.get("userPrincipalName"),
                                                    "status": {"error_code": code}}}},
            "source": {"ip": rec.get("ipAddress") or None}, "user": {"name": rec.get("userPrincipalName")}}


def audit_doc(rec: dict[str, Any], tenant: str, dataset: str, ticks: int) -> dict[str, Any]:
    # azure.auditlogs has no event.id (protocols.md §4e): the id is only under properties.
    return {"@timestamp": timestamp(ticks), "data_stream": {"dataset": f"azure.{dataset}", "namespace": "default",
                                                      "type": "logs"},
            "event": {"action": rec.get("activityDisplayName") or rec.get("provisioningAction"), "kind": "event",
                      "dataset": f"azure.{dataset}"},
            "azure": {"tenant_id": tenant, "correlation_id": rec.get("correlationId"),
                      dataset: {"category": "AuditLogs" if dataset == "auditlogs" else "ProvisioningLogs",
                                "operation_name": rec.get("activityDisplayName"),
                                "properties": {"id": rec.get("id"), "result": rec.get("result")}}}}


def o365_doc(rec: dict[str, Any], tenant: str, ticks: int) -> dict[str, Any]:
    rt = rec.get("RecordType")
    audit = {k: (str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
             for k, v in rec.items() if k != "Id"}  # the pipeline renames Id -> event.id and stringifies
    return {"@timestamp": timestamp(ticks),
            "data_stream": {"dataset": "o365.audit", "namespace": "default", "type": "logs"},
            "event": {"id": rec.get("Id"), "code": _RECORD_NAMES.get(rt, str(rt)) if isinstance(rt, int) else rt,
                      "provider": rec.get("Workload"), "action": rec.get("Operation"), "dataset": "o365.audit",
                      "kind": "event"},
            "organization": {"id": rec.get("OrganizationId") or tenant}, "user": {"id": rec.get("UserId")},
            "o365": {"audit": audit}}


def defender_doc(rec: dict[str, Any], kind: str, ticks: int) -> dict[str, Any]:
    """m365_defender.alert / .incident (elastic/integrations packages/m365_defender): `event.id` = Graph
    `id` (renamed to m365_defender.<kind>.id and copied), `@timestamp` = lastUpdateDateTime,
    `cloud.account.id` = tenantId."""
    return {"@timestamp": timestamp(ticks), "data_stream": {"dataset": f"m365_defender.{kind}", "namespace": "default",
                                                      "type": "logs"},
            "event": {"id": rec.get("id"), "kind": "alert" if kind == "alert" else "event",
                      "dataset": f"m365_defender.{kind}", "provider": rec.get("serviceSource")},
            "cloud": {"account": {"id": rec.get("tenantId")}},
            "m365_defender": {kind: {"id": rec.get("id"), "status": rec.get("status"),
                                     "severity": rec.get("severity")}}}


def document(stream: str, tenant: str, ticks: int, body: bytes) -> tuple[str, dict[str, Any]]:
    """(index, document) for one SIEM row."""
    rec = jsontext.loads(body)
    if stream in _DEFENDER:
        return f"logs-m365_defender.{_DEFENDER[stream]}-default", defender_doc(rec, _DEFENDER[stream], ticks)
    if stream in _CATEGORIES:
        return "logs-azure.signinlogs-default", signin_doc(rec, tenant, stream, ticks)
    if stream == "graph.directory_audits":
        return "logs-azure.auditlogs-default", audit_doc(rec, tenant, "auditlogs", ticks)
    if stream == "graph.provisioning":
        return "logs-azure.provisioning-default", audit_doc(rec, tenant, "provisioning", ticks)
    return "logs-o365.audit-default", o365_doc(rec, tenant, ticks)


def lookup(doc: dict[str, Any], path: str) -> list[Any]:
    """Values at a dotted path (object arrays flattened), as `fields` returns them."""
    values: list[Any] = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for v in values:
            if isinstance(v, dict) and part in v:
                got = v[part]
                nxt.extend(got if isinstance(got, list) else [got])
        values = nxt
    return [v for v in values if v is not None and not isinstance(v, dict)]


class Doc:
    __slots__ = ("id", "index", "ms", "seq", "source", "visible")

    def __init__(self, index: str, doc_id: str, source: dict[str, Any], ms: int, seq: int,
                 visible: float = 0.0) -> None:
        self.index, self.id, self.source, self.ms, self.seq = index, doc_id, source, ms, seq
        self.visible = visible  # epoch ms from which searches see it (connector lag, refresh)


def build_docs(copy: SiemCopy) -> list[Doc]:
    """Index every row; o365 rows get `_id` = a fingerprint of Id, so a duplicate overwrites (as the
    integration's fingerprint processor makes it) while azure rows get auto ids and stay duplicated."""
    docs: list[Doc] = []
    fingerprints: set[str] = set()
    for sc in copy.streams:
        for r in sc.rows:
            index, source = document(sc.stream, sc.tenant, r.ticks, r.body)
            # m365_defender: _id = fingerprint of id and lastUpdateDateTime (r.id is exactly that version
            # key), so a re-sent version overwrites while each version stays its own document
            if index == "logs-o365.audit-default" or index.startswith("logs-m365_defender."):
                doc_id = base64.urlsafe_b64encode(hashlib.sha1(r.id.encode()).digest()[:15]).decode()  # noqa: S324
                if doc_id in fingerprints:
                    continue
                fingerprints.add(doc_id)
            else:
                doc_id = uuid.uuid4().hex
            # searchable once the API served the record plus `ingestion_delay` (siem_copy.Row.ingested)
            docs.append(Doc(index, doc_id, source, r.ticks // 10_000, 0, r.ingested / 10_000))
    docs.sort(key=lambda d: d.ms)
    for n, d in enumerate(docs):
        d.seq = n  # the PIT's _shard_doc tiebreaker
    return docs
