"""The emulator's own table of the streams the agent collects: which API serves each and how.

Deliberately a copy, not an import of `agent.streams`: the witness must not share code with the
agent it checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Where one stream lives in Microsoft's APIs."""

    name: str
    api: str  # "graph" or "management"
    id_field: str
    time_field: str
    graph_path: str = ""  # Graph list path, lower-cased, under /{version}/
    event_type: str = ""  # beta signInEventTypes value
    content_type: str = ""  # Management Activity content type


STREAMS: Final[dict[str, StreamInfo]] = {
    s.name: s
    for s in (
        StreamInfo(
            "graph.signins.interactive",
            "graph",
            "id",
            "createdDateTime",
            "auditlogs/signins",
            "interactiveUser",
        ),
        StreamInfo(
            "graph.signins.noninteractive",
            "graph",
            "id",
            "createdDateTime",
            "auditlogs/signins",
            "nonInteractiveUser",
        ),
        StreamInfo(
            "graph.signins.serviceprincipal",
            "graph",
            "id",
            "createdDateTime",
            "auditlogs/signins",
            "servicePrincipal",
        ),
        StreamInfo(
            "graph.signins.managedidentity",
            "graph",
            "id",
            "createdDateTime",
            "auditlogs/signins",
            "managedIdentity",
        ),
        StreamInfo("graph.directory_audits", "graph", "id", "activityDateTime", "auditlogs/directoryaudits"),
        StreamInfo("graph.provisioning", "graph", "id", "activityDateTime", "auditlogs/provisioning"),
        StreamInfo(
            "o365.azure_active_directory",
            "management",
            "Id",
            "CreationTime",
            content_type="Audit.AzureActiveDirectory",
        ),
        StreamInfo("o365.exchange", "management", "Id", "CreationTime", content_type="Audit.Exchange"),
        StreamInfo("o365.sharepoint", "management", "Id", "CreationTime", content_type="Audit.SharePoint"),
        StreamInfo("o365.general", "management", "Id", "CreationTime", content_type="Audit.General"),
        StreamInfo("o365.dlp_all", "management", "Id", "CreationTime", content_type="DLP.All"),
        # Graph security API (v1.0): each version of an alert is one record, its id the version key
        # `<id>@<lastUpdateDateTime>` (the agent's documented archive id for these streams).
        StreamInfo("graph.security_alerts", "security", "id", "lastUpdateDateTime", "security/alerts_v2"),
        StreamInfo("graph.security_incidents", "security", "id", "lastUpdateDateTime", "security/incidents"),
    )
}

CONTENT_TYPES: Final[dict[str, str]] = {s.content_type: s.name for s in STREAMS.values() if s.content_type}
EVENT_TYPES: Final[dict[str, str]] = {s.event_type: s.name for s in STREAMS.values() if s.event_type}
