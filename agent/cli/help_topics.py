"""`agent help [TOPIC]`: short answers at the terminal, each pointing at the doc that says it in full.

All topic text lives here, so the parser's choices, the completion script and the list printed by
`agent help` come from one table and cannot disagree. Each text is a summary of a docs/*.md page;
the page stays the reference.
"""

from __future__ import annotations

from agent.streams import STREAMS

_SOURCES = {
    "graph": "Microsoft Graph",
    "graph_security": "Microsoft Graph security (Defender alerts, incidents)",
    "management_activity": "Office 365 Management Activity API",
    "service_notices": "Microsoft 365 service health notices",
}


def _streams() -> str:
    """Built from the stream table itself, so a new stream is listed the day it is added."""
    width = max(len(name) for name in STREAMS)
    rows = "\n".join(f"  {name:<{width}}  {_SOURCES.get(spec.source, spec.source)}" for name, spec in STREAMS.items())
    return f"""Streams: what the agent collects, by fixed name (--stream NAME; a tenant's streams list).

{rows}

Graph streams page the Graph list APIs by event time; o365.* streams list the Management
Activity API's content blobs (7 days), and older ranges come from the audit log query
API (see `agent help deep-history`). Each record is stored once, by its id.
An unknown stream name is a usage error (exit 2) naming the valid ones.
Full reference: docs/management-activity.md, docs/querying.md."""


TOPICS: dict[str, tuple[str, str]] = {
    "config": ("the config file: tables, secrets, durations", """\
Config: one TOML file (--config FILE, default /etc/ms-log-agent/agent.toml).

Tables: [[tenants]] (id, client_id, name = the label shown in status and reports, streams), [store]
(local directory or S3), [collection] (initial_lookback, poll_interval, deep_history), [http], [log],
[siem] (Sentinel, Splunk or Elasticsearch, for reconcile and backfill), [service] (agent run:
listen, reconcile_interval, backfill, stall_threshold), [alerts] and [[anchors]].

- Secrets are never written in the file: each secret key exists only as <name>_file (a path whose
  content is the secret) or <name>_env (an environment variable holding it). Paths expand
  environment variables: "${CREDENTIALS_DIRECTORY}/client-secret", "/run/secrets/client-secret".
- Unknown keys are errors naming the key; durations are "90s", "15m", "6h", "7d".
- Relative paths are relative to the config file's directory.

Validate before starting: `agent check` (offline: keys, secret files, a probe write in the store),
`agent check --online` (also a token per tenant and a SIEM query). A problem is exit 2.
Every key with its default: packaging/agent.example.toml; deployment: docs/deployment.md."""),
    "streams": ("the stream names and where each comes from", ""),
    "exit-codes": ("what each exit code means", """\
Exit codes, the same for every command (audit-collector adds two):

  0  ok
  1  failure: a pass, a request or a check failed (the error is printed in one line);
     verify: damage found
  2  usage or config error: a bad option, an unknown stream or tenant, a missing or unreadable
     secret file (the message names the key and the file)
  3  gaps found: reconcile - the SIEM lacks records the archive holds (or still lacks them after
     --backfill); triangulate - a Microsoft pipeline lacks what its sibling has;
     audit-collector - the audited collector missed records
  4  audit-collector: duplicates only;  5  audit-collector: invented records, none missed

"Could not check" is never 0: a SIEM bucket that could not be verified is exit 1.
Scripts: `agent reconcile --quiet` prints nothing; the exit code says it."""),
    "alerts": ("alert channels and the kinds of alert", """\
Alerts: `agent run` sends one alert per condition that means "records may be missing", to every
[[alerts.webhooks]] (kind = "generic", "teams", "slack", "pagerduty"; the URL only from url_file or
url_env) and every [[alerts.email]] (SMTP). The same condition has the same key and is sent once,
even across restarts; [alerts] max_per_hour caps each channel.

Kinds: siem_gap, agent_gap, stream_stalled, stream_silent, credentials_failing,
subscription_disabled, store_failing, window_failed, service_notice, task_failed, siem_unverified,
licence_refused, upstream_gap, backfill_dry_run, backfill_sent.

A failed delivery is retried, then logged once at ERROR with the channel's host and reason, counted
in agent_alerts_failed_total, and /readyz answers 503 until a delivery to that channel succeeds.
Payload and the full catalogue: docs/alerts.md."""),
    "metrics": ("Prometheus metrics, /healthz and /readyz", """\
Metrics: `agent run` serves OpenMetrics at http://[service] listen/metrics (default
127.0.0.1:9464), beside /healthz (the process is alive) and /readyz (503 listing the problems:
store failing, credentials failing, a stalled stream, an alert channel failing).

Series are labelled by tenant GUID and stream; agent_tenant_info maps the GUID to the config's name:
  agent_stream_stalled * on(tenant) group_left(name) agent_tenant_info
Start with: agent_stream_stalled, agent_stream_silent, agent_cursor_lag_seconds,
agent_last_success_timestamp_seconds, agent_records_stored_total, agent_ledger_gaps,
agent_http_retries_exhausted_total, agent_alerts_failed_total.

Every agent_* metric: docs/metrics.md; alerting rules and a Grafana dashboard: packaging/."""),
    "backfill": ("sending the SIEM exactly the records it lacks", """\
Backfill: after a reconcile proves the SIEM lacks records the archive holds, send exactly those,
once, marked as backfilled (Sentinel Logs Ingestion, Splunk HEC with acknowledgements,
Elasticsearch _bulk).

  agent reconcile --since 7d --backfill     send, then report
  agent reconcile --since 7d --dry-run      what would be sent; sends nothing

A ledger remembers what the SIEM acknowledged, so a re-run sends nothing twice. Exit 0 when nothing
is left missing, 3 when something still is (failed, in doubt, not attempted), 1 when a bucket could
not be verified, 2 without the SIEM's ingestion keys.
In the service: [service] backfill = "off" (default), "alert" (dry run, alerts only) or "on"
(bounded records per run). Full reference: docs/backfill.md."""),
    "anchors": ("chain heads kept where the store's writer cannot rewrite them", """\
Anchors: each stream's archive is a hash chain of manifests; [[anchors]] copy every chain head to a
place that whoever can write the store cannot rewrite, so `agent verify` can prove the archive
was not edited or truncated:

  local  create-only files on another disk, a WORM mount or an append-only directory
  s3     one object per head with S3 Object Lock in COMPLIANCE mode
  siem   one document, event or row per head in Elasticsearch, Splunk or Sentinel

`agent verify` re-hashes segments, walks the chains and checks them against every anchor; exit 1
on damage. Give anchors credentials of their own. Threat model and details: docs/integrity.md."""),
    "deep-history": ("Microsoft 365 audit records older than 7 days", """\
Deep history: the Management Activity API lists content for 7 days only. Older Microsoft 365 audit
records (180 days with Purview standard audit) come from Graph's audit log query API
(security/auditLog/queries), one day per query:

  agent collect --since 30d --stream o365.exchange

Reconcile and backfill over such ranges plan the part the Management API can list there and the
older part on the query API. A record reached through both is stored once (same Id); which API
served what is kept in _meta/provenance, never in the records.
The app needs AuditLogsQuery.Read.All (application). A query without it may complete with zero
records and no error, so the agent checks an empty answer before trusting it.
[collection] deep_history = false turns it off (older ranges are then clamped to 7 days).
Full reference: docs/management-activity.md ("Deep history")."""),
}


def text(topic: str) -> str:
    """The text of one topic (KeyError for an unknown one: the parser's choices prevent it)."""
    if topic == "streams":
        return _streams()
    return TOPICS[topic][1]


def index(prog: str = "agent") -> str:
    """`agent help` with no topic: the topics, one line each."""
    width = max(len(t) for t in TOPICS)
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (summary, _) in TOPICS.items())
    return (f"Usage: {prog} help TOPIC   (commands and options: {prog} --help, {prog} COMMAND --help)\n\n"
            f"Topics:\n{rows}\n")
