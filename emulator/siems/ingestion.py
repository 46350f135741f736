"""Emulated Azure Monitor Logs Ingestion API (the data collection endpoint) feeding the emulated workspace.

`POST {endpoint}/dataCollectionRules/{dcrImmutableId}/streams/{streamName}?api-version=2023-01-01`
with a bearer token for `https://monitor.azure.com`, a JSON array body (optionally
`Content-Encoding: gzip`), answered 204 No Content. Documented behaviour reproduced: the 1 MB
call limit (compressed or not) as 413 `ContentLengthLimitExceeded`; 429 with `Retry-After`;
5xx; field values over 64 KB silently truncated; and **no dedup**: a batch sent twice is stored
twice, as in a real workspace.

The emulator's one DCR (`dcr_immutable_id`, stable per seed) declares one stream per Sentinel
table the Entra / Office 365 connectors fill, `Custom-<Table>_Backfill_CL`, flowing to the custom
table `<Table>_Backfill_CL` with the transform `source` (every declared column kept). Rows become
queryable through the Log Analytics query endpoint (`loganalytics.py`) `[siem] ingest_latency`
after the write (at once by default), so a second reconcile sees them.
"""

from __future__ import annotations

import gzip
import random
import time
import uuid
import zlib
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems import kql_syntax
from emulator.siems.siem_copy import Ingested, SiemCopy

API_VERSIONS = ("2023-01-01", "2021-11-01-preview")
SUFFIX = "_Backfill_CL"
_ID_COLUMNS = ("Id", "OfficeId", "RecordId", "VendorOriginalId", "ProviderIncidentId")  # the debug view's id


def dcr_immutable_id(seed: int) -> str:
    """A stable DCR immutable id per scenario seed (`dcr-` + 32 hex digits, as Azure shows them)."""
    return "dcr-" + uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-dcr/{seed}").hex


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "real"
    if isinstance(value, dict | list):
        return "dynamic"
    return "string"


class CustomTable:
    """A `*_CL` table filled by ingestion: rows kept sorted by TimeGenerated, columns added as they appear."""

    def __init__(self, name: str, columns: dict[str, str] | None = None) -> None:
        self.name = name
        self._times: list[int] = []
        self._cols: dict[str, list[Any]] = {"_ingested": [], **{c: [] for c in columns or {}}}
        # a table created with a schema answers queries on its columns before any row arrives
        self._types: dict[str, str] = {"TimeGenerated": "datetime", **(columns or {})}

    def __len__(self) -> int:
        return len(self._times)

    def times(self) -> Sequence[int]:
        return self._times

    def schema(self) -> list[tuple[str, str]]:
        return [("TimeGenerated", "datetime"), *((c, t) for c, t in self._types.items() if c != "TimeGenerated"),
                ("TenantId", "string"), ("Type", "string")]

    def column(self, name: str) -> Sequence[Any] | None:
        if name == "TimeGenerated":
            return self._times
        if name == "Type":
            return [self.name] * len(self._times)
        return self._cols.get(name)

    def insert(self, ticks: int, row: dict[str, Any], ingested: int) -> None:
        at = bisect_right(self._times, ticks)
        self._times.insert(at, ticks)
        self._cols["_ingested"].insert(at, ingested)
        for name, value in row.items():
            if name in ("TimeGenerated", "Type", "_ingested"):
                continue
            if name not in self._cols:
                self._cols[name] = [None] * (len(self._times) - 1)
                self._types[name] = _type_of(value)
            # Log Analytics returns dynamic values as JSON text
            text = orjson.dumps(value).decode() if isinstance(value, dict | list) else value
            self._cols[name].insert(at, _truncate(text) if isinstance(text, str) else text)
        for values in self._cols.values():
            if len(values) < len(self._times):
                values.insert(at, None)


# "Maximum size for field values: 64 KB. Fields longer than 64 KB are truncated."
# (learn.microsoft.com/azure/azure-monitor/service-limits#logs-ingestion-api): silently, the call is
# still a 204. A dynamic value is one field too (its JSON text), so a cut one no longer parses.
FIELD_LIMIT = 65_536


def _truncate(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= FIELD_LIMIT:
        return text
    return data[:FIELD_LIMIT].decode("utf-8", "ignore")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class IngestionEndpoint:
    """The DCE: one DCR, its streams, the custom tables they fill, and the fault dice."""

    def __init__(self, copy: SiemCopy, tables: dict[str, CustomTable], dcr: str, token_ok: Callable[[str], bool],
                 seed: int, now: Callable[[], int] | None = None) -> None:
        self.copy = copy
        self.tables = tables
        self.dcr = dcr
        self.streams = {f"Custom-{name}": table for name, table in tables.items()}
        self.token_ok = token_ok
        self.rng = random.Random(f"{seed}|ingestion")
        self.now = now or (lambda: time.time_ns() // 100)

    async def upload(self, request: web.Request) -> web.Response:
        self.copy.ingest_requests["loganalytics"] = self.copy.ingest_requests.get("loganalytics", 0) + 1
        token = credentials(request.headers.get("Authorization"), "Bearer")  # scheme case-insensitive
        if not token or not self.token_ok(token):
            return _error(401, "InvalidToken", "The access token is missing, invalid, or for another audience "
                          "(expected https://monitor.azure.com).")
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            return _error(400, "InvalidApiVersion", f"The api-version '{version}' is invalid. "
                          f"Supported versions: {', '.join(API_VERSIONS)}.")
        if request.match_info["dcr"] != self.dcr:
            return _error(404, "NotFound", f"Data collection rule with immutable Id '{request.match_info['dcr']}' "
                          "not found.")
        table = self.streams.get(request.match_info["stream"])
        if table is None:
            return _error(400, "InvalidStream", f"Stream '{request.match_info['stream']}' is not declared in "
                          "the data collection rule.")
        limit = self.copy.plan.ingest_max_bytes
        wire = request.content_length  # as sent (compressed or not); aiohttp inflates gzip bodies on read
        raw = await request.read()
        if raw[:2] == b"\x1f\x8b":  # a server that does not inflate for us
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                return _error(400, "InvalidContentEncoding", "The request body could not be decompressed (gzip).")
        size = max(wire or 0, len(raw))
        if size > limit:
            return _error(413, "ContentLengthLimitExceeded", f"Maximum allowed content length: {limit} bytes "
                          f"({limit / 1048576:.2f} MB). Provided content length: {size} bytes.")
        plan = self.copy.plan
        if plan.ingest_throttle and self.rng.random() < plan.ingest_throttle:
            resp = _error(429, "TooManyRequests", "The request rate is above the limit of the data collection rule.")
            resp.headers["Retry-After"] = "1"
            return resp
        if plan.ingest_server_error and self.rng.random() < plan.ingest_server_error:
            return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
        try:
            rows = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "InvalidContent", "The request body is not valid JSON.")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return _error(400, "InvalidContent", "The request body must be a JSON array of objects.")
        now = self.now()
        for row in rows:
            ticks = _time(row.get("TimeGenerated"), now)
            # queryable (ingestion_time()) only `ingest_latency` after the write: Azure Monitor documents
            # minutes of ingestion latency (learn.microsoft.com/azure/azure-monitor/logs/data-ingestion-time)
            table.insert(ticks, row, now + plan.ingest_latency)
            rid = next((row[c] for c in _ID_COLUMNS if isinstance(row.get(c), str)), "")
            self.copy.ingested.append(Ingested("loganalytics", table.name, rid, ticks))
        if plan.ingest_lost_response and self.rng.random() < plan.ingest_lost_response:
            return _error(503, "ServiceUnavailable", "The service is temporarily unavailable.")  # stored anyway
        return web.Response(status=204)

    async def debug(self, request: web.Request) -> web.Response:
        return web.json_response(self.copy.ingested_view("loganalytics"))


def _time(value: Any, default: int) -> int:
    """TimeGenerated as ticks; missing or unparseable → the ingestion time (as Azure Monitor does)."""
    if isinstance(value, str):
        try:
            return kql_syntax.parse_datetime(value.replace("+00:00", "Z"))
        except kql_syntax.KqlError:
            return default
    return default


# The table an operator creates for the agent's chain-head heartbeats (`[[anchors]] type = "siem"`
# with Sentinel, docs/integrity.md), with its DCR stream `Custom-MsLogAgentChainHeads_CL`.
CHAIN_HEADS = "MsLogAgentChainHeads_CL"


def custom_tables(base_tables: Sequence[str]) -> dict[str, CustomTable]:
    tables = {f"{t}{SUFFIX}": CustomTable(f"{t}{SUFFIX}") for t in base_tables}
    tables[CHAIN_HEADS] = CustomTable(CHAIN_HEADS, {"Tenant": "string", "Stream": "string", "Seq": "long",
                                                    "Sha256": "string", "Records": "long", "Manifest": "string"})
    return tables


def app(endpoint: IngestionEndpoint) -> web.Application:
    """The `ingestion` service: the data collection endpoint's documented path at its root."""
    application = web.Application(client_max_size=64 << 20)  # the 413 is ours to give, not aiohttp's
    application[STATE] = endpoint
    application.router.add_post("/dataCollectionRules/{dcr}/streams/{stream}", endpoint.upload)
    application.router.add_get("/_emulator/ingested", endpoint.debug)
    return application


STATE = web.AppKey("ingestion", IngestionEndpoint)
