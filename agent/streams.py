"""The fixed stream names (contract 1) and what each stream is: its source, id field and event-time field.

Every other module asks this one; a stream's facts are written down exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

# How long each API keeps records, so how far back a span can be fetched again (a re-collection
# older than this finds nothing, and a span the cursor promised that ages past it is a gap).
# Entra ID keeps audit and sign-in logs 30 days with P1/P2 ("Microsoft Entra data retention").
GRAPH_RETENTION: Final = timedelta(days=30)
# Microsoft 365 records: 180 days through the audit log query API behind the Management API's 7
# (deep history, docs/management-activity.md; with `deep_history = false` or in a national cloud a
# re-collection past 7 days finds nothing, and says so).
MANAGEMENT_RETENTION: Final = timedelta(days=180)
# Defender XDR keeps alerts and incidents 180 days ("Data storage and privacy", Microsoft Defender XDR).
SECURITY_RETENTION: Final = timedelta(days=180)
# How long after an hour ends its volume is taken as settled (silence checks): sign-ins arrive
# minutes late, while Management Activity content typically becomes available 1-2 hours after the
# event (longer at times).
GRAPH_SETTLE: Final = timedelta(minutes=30)
MANAGEMENT_SETTLE: Final = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Static facts about one stream."""

    name: str
    # the source kind: "graph", "graph_security", "management_activity" (agent/sources/registry.py), or
    # "service_notices" (archived by the service's notices bridge, not collected)
    source: str
    id_field: str  # record id in the API's own JSON (contract 3)
    time_field: str  # event time in the API's own JSON
    path: str = ""  # Graph: the list path under the version root
    api_version: str = "v1.0"  # Graph: "v1.0" or "beta"
    event_type: str = ""  # Graph beta signInEventTypes value
    content_type: str = ""  # Management Activity content type
    # Versioned streams (Defender alerts and incidents change after creation): the field whose value
    # tells one version of a record from the next. The archive's record id is then the version key.
    version_field: str = ""
    retention: timedelta = GRAPH_RETENTION  # how far back the API serves the stream's records
    silence_settle: timedelta = GRAPH_SETTLE  # how late an hour's records may still arrive

    def key(self, rec: Any) -> Any:
        """The archive's record id (contract 3) of a record as the API returned it.

        For most streams the API's own id. For a versioned stream, the version key
        `<id>@<lastUpdateDateTime>` (the timestamp exactly as Graph wrote it): each version of an
        alert is then a record of its own, kept once, and a later version never overwrites the
        first. The key is derived, never written into the record (records stay parsed-equal);
        it lives in the segment sidecars, as every id does. None when either part is missing.
        """
        rid = rec.get(self.id_field) if isinstance(rec, dict) else None
        if not self.version_field:
            return rid
        version = rec.get(self.version_field)
        if not isinstance(rid, str) or not rid or not isinstance(version, str) or not version:
            return None
        return f"{rid}@{version}"

    def source_id(self, key: str) -> str:
        """The API's own id behind an archive id: the alert id of a version key, else the key itself.

        SIEM tables hold the API's id (with one row per version), so reconcile compares these.
        """
        return key.rsplit("@", 1)[0] if self.version_field else key


_GRAPH_SIGNINS = "auditLogs/signIns"


def _management(name: str, content_type: str) -> StreamSpec:
    """A Management Activity stream: one content type, the API's `Id` and `CreationTime`."""
    return StreamSpec(name, "management_activity", "Id", "CreationTime", content_type=content_type,
                      retention=MANAGEMENT_RETENTION, silence_settle=MANAGEMENT_SETTLE)

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
        _management("o365.azure_active_directory", "Audit.AzureActiveDirectory"),
        _management("o365.exchange", "Audit.Exchange"),
        _management("o365.sharepoint", "Audit.SharePoint"),
        _management("o365.general", "Audit.General"),
        _management("o365.dlp_all", "DLP.All"),
        # Not a log stream: Microsoft's service notices, archived so the team can see what Microsoft said when.
        # Defender alerts and incidents (Graph security API, v1.0): versioned by lastUpdateDateTime, which
        # is also the event time, so each version lands in the partition of its update and the cursor
        # follows updates (a `$filter` on lastUpdateDateTime returns alerts changed in a window).
        StreamSpec("graph.security_alerts", "graph_security", "id", "lastUpdateDateTime", "security/alerts_v2",
                   version_field="lastUpdateDateTime", retention=SECURITY_RETENTION),
        StreamSpec("graph.security_incidents", "graph_security", "id", "lastUpdateDateTime", "security/incidents",
                   version_field="lastUpdateDateTime", retention=SECURITY_RETENTION),
        StreamSpec("graph.service_announcements", "service_notices", "id", "lastModifiedDateTime",
                   "admin/serviceAnnouncement"),
    )
}

GRAPH_STREAMS: Final = tuple(n for n, s in STREAMS.items() if s.source == "graph")
MANAGEMENT_STREAMS: Final = tuple(n for n, s in STREAMS.items() if s.source == "management_activity")
# Not collected by default: they need SecurityAlert.Read.All / SecurityIncident.Read.All besides the log permissions.
SECURITY_STREAMS: Final = tuple(n for n, s in STREAMS.items() if s.source == "graph_security")


def spec(name: str) -> StreamSpec:
    """Return the spec of a stream, raising KeyError with the valid names for an unknown one."""
    try:
        return STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown stream {name!r}; valid streams: {', '.join(STREAMS)}") from None
LOG_STREAMS: Final = GRAPH_STREAMS + MANAGEMENT_STREAMS  # contract 1: what tenants collect and SIEMs hold
SIEM_STREAMS: Final = LOG_STREAMS + SECURITY_STREAMS  # what a SIEM is reconciled for
