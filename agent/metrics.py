"""Prometheus metrics (OpenMetrics) for the service: one registry, every series named here.

Labels are tenant and stream (bounded sets from the config); never record ids or URLs, which
would make cardinality unbounded and leak data into the monitoring system.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
_TS = ("tenant", "stream")


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter("agent_records_stored", "Records newly written to the archive.", _TS, registry=r)
        self.duplicates = Counter("agent_records_duplicate", "Records fetched again and dropped by id.", _TS,
                                  registry=r)
        self.bytes = Counter("agent_bytes_stored", "Compressed bytes written to the archive.", _TS, registry=r)
        self.requests = Counter("agent_api_requests", "Requests sent to Microsoft APIs.", ("tenant", "api", "code"),
                                registry=r)
        self.throttled = Counter("agent_api_throttled", "Requests answered with a throttle (429 / AF429).",
                                 ("tenant", "api"), registry=r)
        self.passes = Counter("agent_stream_passes", "Collection passes, by result.", (*_TS, "result"), registry=r)
        self.cursor = Gauge("agent_cursor_timestamp_seconds", "Where each stream's cursor stands.", _TS, registry=r)
        self.lag = Gauge("agent_cursor_lag_seconds", "Now minus the stream's cursor.", _TS, registry=r)
        self.last_success = Gauge("agent_last_success_timestamp_seconds", "End of the last successful pass.", _TS,
                                  registry=r)
        self.gaps = Gauge("agent_ledger_gaps", "Recorded agent-side gaps (blobs lost, windows failed).", _TS,
                          registry=r)
        self.windows_failed = Counter("agent_windows_failed", "Windows that could not be completed.", _TS, registry=r)
        self.reconcile_missing = Gauge("agent_reconcile_missing_in_siem", "Records the SIEM lacks (last run).", _TS,
                                       registry=r)
        self.reconcile_agent_missing = Gauge("agent_reconcile_missing_in_agent",
                                             "Records the SIEM has and the archive lacks (last run).", _TS, registry=r)
        self.reconcile_coverage = Gauge("agent_reconcile_coverage_ratio", "SIEM coverage of the archive (last run).",
                                        _TS, registry=r)
        self.backfilled = Counter("agent_backfill_records", "Records sent to the SIEM and acknowledged.", _TS,
                                  registry=r)
        self.alerts = Counter("agent_alerts_sent", "Alerts delivered, by kind.", ("kind",), registry=r)
        self.stalled = Gauge("agent_stream_stalled", "1 when a stream has had no successful pass for too long.", _TS,
                             registry=r)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))  # type: ignore[no-untyped-call]
