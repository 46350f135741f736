"""The fault matrix: every fault the proof suite drives, where it is injected, what the agent does,
and the outcome the tests assert. `docs/reliability.md` is rendered from this table
(`python -m tests.faults.render`) and `test_doc.py` keeps the two in sync.

Outcomes:
- ``retried to completion``: the pass exits 0 and the archive holds exactly what the API served.
- ``visible failure``: the pass exits 1, the stream status carries `last_error`, the cursor stays
  where the archive is complete (never past the failing window), nothing is silently skipped.
- ``gap``: the records can no longer be fetched; the gap is in the window ledger and the stream
  status, and the pass exits 1.
- ``unverified``: (reconcile) the SIEM could not answer; the window is reported `unverified`,
  the report is incomplete (exit 1), and no record is reported missing because of it.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRIED = "retried to completion"
FAILURE = "visible failure"
GAP = "gap"
UNVERIFIED = "unverified"
OUTCOMES = (RETRIED, FAILURE, GAP, UNVERIFIED)


@dataclass(frozen=True)
class Row:
    key: str
    fault: str
    where: str
    behaviour: str
    outcome: str
    section: str


ROWS: list[Row] = []


def row(section: str, key: str, fault: str, where: str, behaviour: str, outcome: str) -> None:
    assert outcome in OUTCOMES and key not in {r.key for r in ROWS}
    ROWS.append(Row(key, fault, where, behaviour, outcome, section))


# --------------------------------------------------------------------------- emulator [faults]
EMU = "Graph + Management (emulator, `agent collect --once` subprocess)"
_KINDS = {
    "throttle": ("Graph 429 + Retry-After; Management AF429 (HTTP 403, no Retry-After)",
                 "waits Retry-After (Graph, and no sibling request starts before it) or jittered backoff (AF429)"),
    "server_error": ("500/502/503/504 with a JSON error body (AF50000 on Management)", "retries with backoff"),
    "reset": ("connection reset mid-body", "transport error → retry"),
    "truncated": ("body cut short (honest or lying Content-Length)", "malformed/short body → retry"),
    "html_error": ("502/503/504 with an HTML page instead of JSON", "retries; message says 'an HTML page'"),
    "token_expiry": ("401 on a token the agent thought valid", "drops the cached token, fetches a new one, retries"),
    "empty_page": ("empty page whose next link repeats itself (Graph `@odata.nextLink`, Management "
                   "`NextPageUri`)", "follows it again (bounded by `max_attempts` in a row)"),
    "licence_error": ("403 Authentication_RequestFromNonPremiumTenantOrB2CTenant on a Graph report list "
                      "(Graph only; the Management API never answers it)",
                      "retries after a pause; a list that has answered is never concluded unlicensed"),
}
for _kind, (_fault, _behaviour) in _KINDS.items():
    row(EMU, f"emulator.{_kind}", f"`[faults] {_kind}` = 0.3: {_fault}", "emulator, every data request",
        _behaviour, RETRIED)
row(EMU, "emulator.graph_quota", "Graph reports quota 3 requests / 10 s (agent told 100)",
    "emulator `[quota] graph_requests_per_10s`", "429 + Retry-After honoured; pacer penalised", RETRIED)
row(EMU, "emulator.server_error.always", "`[faults] server_error` = 1.0 (Graph stream)", "emulator",
    "retries up to `max_attempts`, then fails the stream", FAILURE)
row(EMU, "emulator.html_error.always", "`[faults] html_error` = 1.0 (Management stream)", "emulator",
    "retries up to `max_attempts`, then fails the stream", FAILURE)
row(EMU, "emulator.AF20023", "AF20023 subscription disabled by an admin", "emulator `[management] disabled`",
    "never re-enables it; stream stops with a hint who can fix it", FAILURE)
row(EMU, "emulator.AF20050", "blob listed but 404/AF20050 (not yet expired)", "emulator `[[management.unavailable]]`",
    "retries, then fails the window; cursor stays before the blob", FAILURE)

# --------------------------------------------------------------------------- Management AF codes
MGMT = "Management Activity API error codes (in-process TLS fake)"
_FATAL = {
    "AF10001": (403, "permission set lacks ActivityFeed.Read", "content"),
    "AF20001": (400, "missing parameter", "content"),
    "AF20002": (400, "invalid parameter type", "content"),
    "AF20003": (400, "webhook expiration in the past", "start"),
    "AF20010": (403, "URL tenant differs from the token's", "content"),
    "AF20011": (400, "tenant does not exist", "content"),
    "AF20012": (400, "tenant misconfigured", "content"),
    "AF20013": (400, "URL tenant is not a GUID", "content"),
    "AF20020": (400, "invalid content type", "content"),
    "AF20021": (400, "webhook could not be validated", "start"),
    "AF20052": (400, "content id in the URL is invalid", "blob"),
    "AF20053": (400, "more than one Accept-Language", "content"),
    "AF20054": (400, "Accept-Language syntax", "content"),
}
for _code, (_status, _what, _target) in _FATAL.items():
    row(MGMT, f"mgmt.{_code}", f"{_code} ({_status}): {_what}", f"fake, every `{_target}` request",
        "fatal: no retry; clear error naming the code; cursor held", FAILURE)
_RETRY = {
    "AF20022": ("AF20022 (400) no subscription, while listing", "content", "starts the subscription, lists again"),
    "AF20024": ("AF20024 (400) already enabled, on start", "start", "treated as success"),
    "AF20030": ("AF20030 (400) after the server clock runs 10 min ahead", "content (Date skewed)",
                "learns the offset from `Date`, re-lists on the server's clock"),
    "AF20055": ("AF20055 (400) with the server clock 10 min behind", "content once (Date skewed)",
                "learns the offset from `Date`, re-lists"),
    "AF20031": ("AF20031 (400) invalid nextPage", "next page once", "restarts the listing"),
    "AF20050.once": ("AF20050 (404) blob missing once", "blob once", "retries the blob"),
    "AF429.403": ("AF429 as HTTP 403 (documented)", "content + blob once", "backs off, retries"),
    "AF429.429": ("AF429 as HTTP 429", "content + blob once", "backs off, retries"),
    "AF50000": ("AF50000 (500) internal error", "content + blob once", "retries"),
    "AF50005": ("AF50005 (500, undocumented)", "content + blob once", "retries"),
    "AF50006": ("AF50006 (500, undocumented)", "content + blob once", "retries"),
    "401": ("401 (token rejected)", "content + blob once", "new token, retries"),
    "408": ("408 request timeout", "content + blob once", "retries"),
    "500": ("500 without an AF code", "content + blob once", "retries"),
    "502": ("502", "content + blob once", "retries"),
    "503": ("503", "content + blob once", "retries"),
    "504": ("504", "content + blob once", "retries"),
    "html": ("503 with an HTML body", "content + blob once", "retries"),
    "malformed": ("200 with a malformed JSON body", "content + blob once", "retries"),
    "skew": ("agent clock 2 h behind the server's `Date`", "fake clock skew", "windows follow the server's clock"),
}
for _key, (_fault, _where, _behaviour) in _RETRY.items():
    row(MGMT, f"mgmt.{_key}", _fault, f"fake, {_where}", _behaviour, RETRIED)
row(MGMT, "mgmt.AF20051", "AF20051 (400) blob expired", "fake, blob", "ledger entry + status gap; pass exits 1", GAP)
row(MGMT, "mgmt.AF20050.expired", "AF20050 (404) until the blob's contentExpiration passes", "fake, blob",
    "window fails while fetchable; a gap once expired", GAP)
row(MGMT, "mgmt.nextpage_loop", "`NextPageUri` that loops (A → B → B)", "fake, next page",
    "stops with a clear error instead of looping", FAILURE)
row(MGMT, "mgmt.nextpage_stalled", "empty pages whose `NextPageUri` repeats itself forever", "fake, next page",
    "gives up after `max_attempts` empty pages in a row", FAILURE)

# --------------------------------------------------------------------------- Graph paging
GRAPH = "Graph paging and bodies (in-process fake HTTP client)"
row(GRAPH, "graph.nextlink_loop", "`@odata.nextLink` that loops (A → B → A)", "fake, page 3",
    "stops with a clear error instead of looping; window fails", FAILURE)
row(GRAPH, "graph.nextlink_stalled", "empty pages whose `@odata.nextLink` repeats itself forever", "fake",
    "gives up after `max_attempts` empty pages in a row", FAILURE)
row(GRAPH, "graph.malformed", "200 with a cut JSON body / HTML / a page without `value`", "fake, once each",
    "retries", RETRIED)
row(GRAPH, "graph.invalid_every_attempt", "200 with a complete page holding a record that is invalid JSON (`NaN`), "
    "on every attempt", "fake, page 2, every request", "retries `max_attempts` times, then stores the records that "
    "parse alone, keeps the bad one's bytes under `_meta/quarantine/` and names it as a gap, follows the next "
    "link; cursor moves on (a page whose brackets do not balance is kept whole, its window named)", GAP)
row(GRAPH, "graph.non_object_record", "entries of `value` that are not objects (`\"x\"`, `7`)", "fake, every request",
    "objects stored; each other value quarantined and named as a gap (no retry loop)", GAP)
row(GRAPH, "graph.403", "403 Authorization_RequestDenied", "fake, every request",
    "fatal; message names the permissions to grant", FAILURE)
row(GRAPH, "graph.licence", "403 Authentication_RequestFromNonPremiumTenantOrB2CTenant", "fake, every request",
    "retried twice (premium tenants get it intermittently), then fatal LicenseError: sign-ins need P1/P2",
    FAILURE)
row(GRAPH, "graph.licence_intermittent", "the licence 403 now and then on a list that answers otherwise",
    "fake, 2 of 3 requests", "retried after a pause; nothing lost; never concluded unlicensed", RETRIED)

# --------------------------------------------------------------------------- SIEM query endpoints
SIEM = "SIEM query endpoints during `reconcile` (emulated SIEMs + fault middleware)"
SIEM_KINDS = {"sentinel": "Log Analytics `query`", "splunk": "Splunk `search/v2/jobs/export`",
              "elastic": "Elasticsearch `_pit` / `_search`"}
SIEM_RETRYABLE = {"401": "new token / credentials re-read, retry", "408": "retry", "429": "waits Retry-After, retry",
                  "500": "retry", "502": "retry", "503": "retry"}
SIEM_FATAL = {"403": "403 forbidden", "404": "404 not found", "409": "409 conflict", "413": "413 payload too large",
              "504": "504 query timed out", "json": "200 with malformed JSON", "html": "200 with an HTML page"}
for _siem, _where in SIEM_KINDS.items():
    for _status, _behaviour in SIEM_RETRYABLE.items():
        row(SIEM, f"siem.{_siem}.{_status}.once", f"{_status} once", _where, _behaviour, RETRIED)
        row(SIEM, f"siem.{_siem}.{_status}.always", f"{_status} on every request", _where,
            "retries up to `max_attempts`, then the stream's window is unverified", UNVERIFIED)
    for _status, _what in SIEM_FATAL.items():
        behaviour = ("falls back to the v1 export endpoint" if (_siem, _status) == ("splunk", "404")
                     else "no retry; the stream's window is unverified")
        if (_siem, _status) == ("splunk", "404"):
            row(SIEM, f"siem.{_siem}.{_status}.once", f"{_what} once (v2 export)", _where, behaviour, RETRIED)
        row(SIEM, f"siem.{_siem}.{_status}.always", f"{_what} on every request", _where,
            "no retry; the stream's window is unverified", UNVERIFIED)

# --------------------------------------------------------------------------- SIEM write endpoints
WRITE = "SIEM write endpoints during `reconcile --backfill` (emulated SIEMs, `[siem]` ingestion knobs)"
WRITE_KINDS = {"sentinel": "Logs Ingestion API", "splunk": "HEC `services/collector/event` + `ack`",
               "elastic": "Elasticsearch `_bulk`"}
WRITE_FAULTS = {
    "ingest_throttle": ("429 + Retry-After on half the writes", "waits Retry-After, resends that batch"),
    "ingest_server_error": ("5xx on half the writes", "retries; ids of a batch in doubt are looked up before a resend"),
    "ingest_lost_response": ("write stored, then the answer lost (5xx)",
                             "in doubt: asks the SIEM, resends only absent ids"),
}
for _siem, _where in WRITE_KINDS.items():
    for _knob, (_fault, _behaviour) in WRITE_FAULTS.items():
        row(WRITE, f"write.{_siem}.{_knob}", f"`{_knob}` = 0.5: {_fault}", _where,
            f"{_behaviour}; every lost record ends in the SIEM exactly once", RETRIED)
row(WRITE, "write.splunk.hec_ack_lost", "`hec_ack_lost` = 0.5: indexer acknowledgements that never come",
    WRITE_KINDS["splunk"], "unacknowledged batches are looked up by id, resent only if absent", RETRIED)
row(WRITE, "write.elastic.bulk_item_reject", "`bulk_item_reject` = 0.5: item-level 429 in a 200 `_bulk` answer",
    WRITE_KINDS["elastic"], "resends only the rejected items", RETRIED)
row(WRITE, "write.sentinel.413", "413 for a batch over the 1 MB (here: 20 kB) limit", WRITE_KINDS["sentinel"],
    "splits the batch in halves until it fits", RETRIED)
row(WRITE, "write.splunk.401", "HEC code 4 (invalid token, HTTP 403)", WRITE_KINDS["splunk"],
    "stops with 'the HEC token is invalid'; nothing marked acknowledged; exit 3", FAILURE)

BY_KEY = {r.key: r for r in ROWS}
