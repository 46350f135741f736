"""Prometheus metrics (OpenMetrics) for the service: one registry, every series named here.

Labels are tenant and stream (bounded sets from the config); never record ids or URLs, which
would make cardinality unbounded and leak data into the monitoring system.

Process metrics come from `ProcessCollector` below, which reads only /proc/self: under systemd's
`ProcSubset=pid` (our unit file) /proc/stat is hidden, and prometheus_client's own process
collector then exports nothing.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

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
        self.reconcile_checked = Gauge("agent_reconcile_checked", "Archive records compared with the SIEM (last run).",
                                       _TS, registry=r)
        self.reconcile_coverage = Gauge("agent_reconcile_coverage_ratio", "SIEM coverage of the archive (last run).",
                                        _TS, registry=r)
        self.reconcile_unverified = Gauge(
            "agent_reconcile_unverified", "1 when the last scheduled reconcile could not check (part of) the "
            "stream against the SIEM: a state of its own, never read as no gaps.", _TS, registry=r)
        self.reconcile_last_complete = Gauge(
            "agent_reconcile_last_complete_timestamp_seconds",
            "When a scheduled reconcile last checked the stream's whole window (0 = never since start).", _TS,
            registry=r)
        self.backfilled = Counter("agent_backfill_records", "Records sent to the SIEM and acknowledged.", _TS,
                                  registry=r)
        self.quarantined = Counter("agent_segments_quarantined",
                                   "Segments found in the archive that this agent did not write (never read).",
                                   _TS, registry=r)
        self.alerts = Counter("agent_alerts_sent", "Alerts delivered, by kind.", ("kind",), registry=r)
        self.stalled = Gauge("agent_stream_stalled", "1 when a stream has had no successful pass for too long.", _TS,
                             registry=r)
        self.silent = Gauge("agent_stream_silent", "1 when the last settled hour is far below its usual volume.",
                            _TS, registry=r)
        self.upstream_missing = Gauge("agent_upstream_missing",
                                      "Records this stream lacks that its sibling Microsoft pipeline has "
                                      "(last triangulation).", _TS, registry=r)
        self.restarts = Counter("agent_task_restarts", "Service tasks restarted after a crash (a bug).", ("task",),
                                registry=r)
        # Series carry the tenant GUID (stable, what the APIs and the archive use); this one maps it to
        # the config's name, so a dashboard can show labels: `* on(tenant) group_left(name) agent_tenant_info`.
        self.tenant_info = Gauge("agent_tenant_info", "1 per configured tenant: its GUID and name (label).",
                                 ("tenant", "name"), registry=r)
        self.alerts_failed = Counter("agent_alerts_failed", "Alert deliveries that failed after every retry.",
                                     ("kind", "webhook"), registry=r)
        r.register(ProcessCollector())
        r.register(RetryCollector())

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))  # type: ignore[no-untyped-call]


class RetryCollector(Collector):
    """`agent_http_retries_total{reason}` (retries made) and `agent_http_retries_exhausted_total{reason}`
    (requests that failed after their last attempt), from the process-wide counts in agent.http."""

    def collect(self) -> Iterator[Metric]:
        from agent.http import EXHAUSTED, RETRIES

        for name, doc, counts in (
                ("agent_http_retries", "Requests retried after a retryable error (logged at INFO).", RETRIES),
                ("agent_http_retries_exhausted", "Requests that failed after every attempt (logged at WARNING).",
                 EXHAUSTED)):
            family = CounterMetricFamily(name, doc, labels=("reason",))
            for reason, n in sorted(counts.items()):
                family.add_metric([reason], n)
            yield family


class ProcessCollector(Collector):
    """process_* metrics (the names Prometheus' client libraries use) from /proc/self only.

    `process_start_time_seconds` needs the boot time, which /proc/stat holds; it is derived from
    CLOCK_BOOTTIME instead (a clock, not a file), so it works under ProcSubset=pid as well.
    """

    def __init__(self, proc: str = "/proc/self") -> None:
        self.proc = proc
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.page = resource.getpagesize()

    def collect(self) -> Iterator[Metric]:
        try:
            with open(f"{self.proc}/stat", "rb") as f:
                # fields after the command name, which may contain spaces and is wrapped in ()
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            return  # not Linux, or /proc not mounted: no process metrics rather than an error
        utime, stime, start_ticks = int(fields[11]), int(fields[12]), int(fields[19])
        vsize, rss_pages = int(fields[20]), int(fields[21])
        cpu = CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.")
        cpu.add_metric([], (utime + stime) / self.ticks)
        yield cpu
        yield GaugeMetricFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.", value=vsize)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.",
                                value=rss_pages * self.page)
        boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        yield GaugeMetricFamily("process_start_time_seconds", "Start time of the process since unix epoch.",
                                value=boot + start_ticks / self.ticks)
        try:
            fds = len(os.listdir(f"{self.proc}/fd"))
        except OSError:
            fds = -1
        if fds >= 0:
            yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors.", value=fds)
        yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors.",
                                value=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
