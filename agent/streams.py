"""The fixed stream names (contract 1) and what each stream is: its source, id field and event-time field.

Every other module asks this one; a stream's facts are written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Static facts about one stream."""

    name: str
    source: str  # "graph" or "management_activity"
    id_field: str  # record id in the API's own JSON (contract 3)
    time_field: str  # event time in the API's own JSON
    path: str = ""  # Graph: the list path under the version root
    api_version: str = "v1.0"  # Graph: "v1.0" or "beta"
    event_type: str = ""  # Graph beta signInEventTypes value
    content_type: str = ""  # Management Activity content type


_GRAPH_SIGNINS = "auditLogs/signIns"

STREAMS: Final[dict[str, StreamSpec]] = {
    s.name: s
    for s in (
        StreamSpec("graph.signins.interactive", "graph", "id", "createdDateTime",
                   _GRAPH_SIGNINS, "beta", "interactiveUser"),
        StreamSpec("graph.signins.noninteractive", "graph", "id", "createdDateTime",
                   _GRAPH_SIGNINS, "beta", "nonInteractiveUser"),
        StreamSpec("graph.signins.serviceprincipal", "graph", "id", "createdDateTime",
                   _GRAPH_SIGNINS, "beta", "servicePrincipal"),
        StreamSpec("graph.signins.managedidentity", "graph", "id", "createdDateTime",
                   _GRAPH_SIGNINS, "beta", "managedIdentity"),
        StreamSpec("graph.directory_audits", "graph", "id", "activityDateTime", "auditLogs/directoryAudits"),
        StreamSpec("graph.provisioning", "graph", "id", "activityDateTime", "auditLogs/provisioning"),
        StreamSpec("o365.azure_active_directory", "management_activity", "Id", "CreationTime",
                   content_type="Audit.AzureActiveDirectory"),
        StreamSpec("o365.exchange", "management_activity", "Id", "CreationTime", content_type="Audit.Exchange"),
        StreamSpec("o365.sharepoint", "management_activity", "Id", "CreationTime",
                   content_type="Audit.SharePoint"),
        StreamSpec("o365.general", "management_activity", "Id", "CreationTime", content_type="Audit.General"),
        StreamSpec("o365.dlp_all", "management_activity", "Id", "CreationTime", content_type="DLP.All"),
        # Not a log stream: Microsoft's service notices, archived so the team can see what Microsoft said when.
        StreamSpec("graph.service_announcements", "service_notices", "id", "lastModifiedDateTime",
                   "admin/serviceAnnouncement"),
    )
}

GRAPH_STREAMS: Final = tuple(n for n, s in STREAMS.items() if s.source == "graph")
MANAGEMENT_STREAMS: Final = tuple(n for n, s in STREAMS.items() if s.source == "management_activity")


def spec(name: str) -> StreamSpec:
    """Return the spec of a stream, raising KeyError with the valid names for an unknown one."""
    try:
        return STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown stream {name!r}; valid streams: {', '.join(STREAMS)}") from None
LOG_STREAMS: Final = GRAPH_STREAMS + MANAGEMENT_STREAMS  # contract 1: what tenants collect and SIEMs hold
