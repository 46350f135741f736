"""Emulated Splunk search export (`/services/search/v2/jobs/export`, v1 path too) over the SIEM copy.

Events are the source records as-is (Splunk_TA_o365 `o365:management:activity`; the Azure add-on's
`azure:aad:signin` / `azure:aad:audit`), with fields extracted the way KV_MODE=json does (`a.b`,
arrays as `a{}`). SPL subset: `search` with `field=value`, `field IN (...)`, `NOT`, `index=`,
`sourcetype=`, `earliest=`/`latest=`; then `| bin _time span=Ns`, `| stats count [AS n],
dc(f) [AS d] [BY ...]`, `| fields f ...`, `| fields - _*`. Output is newline-delimited JSON:
preview rows first for reporting searches, then final rows, the last with `"lastrow": true`.
Anything else is a 400 with Splunk's `messages` body.

Fault `search_peer_down` (scenario `[siem]`): the events live on two emulated indexers; when one
is down, a search answers from the other alone, with a `WARN` message in the export stream, as a
distributed search does (Splunk Enterprise "Distributed search error messages": `status=down`,
the remote peer is not available; Troubleshooting Manual: "Unable to distribute to peer named ...
because peer has status = "Down""). Clients read messages from any line of the JSON export
(splunk-sdk-python `splunklib/results.py` JSONResultsReader yields a Message per `messages` entry).
"""

from __future__ import annotations

import bisect
import random
import re
import shlex
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems.siem_copy import TICKS_PER_SECOND, Ingested, SiemCopy
from emulator.world import jsontext

SOURCETYPES = {
    "graph.signins.interactive": "azure:aad:signin", "graph.signins.noninteractive": "azure:aad:signin",
    "graph.signins.serviceprincipal": "azure:aad:signin", "graph.signins.managedidentity": "azure:aad:signin",
    "graph.directory_audits": "azure:aad:audit", "graph.provisioning": "azure:aad:provisioning",
    # Splunk Add-on for Microsoft Security (Splunkbase 6207): Graph incidents (`$expand=alerts`) as
    # ms365:defender:incident, each of their alerts as-is as ms365:defender:incident:alerts
    "graph.security_alerts": "ms365:defender:incident:alerts", "graph.security_incidents": "ms365:defender:incident",
}
OFFICE_SOURCETYPE = "o365:management:activity"
INDEX = "main"


class SplError(Exception):
    """A search the subset cannot run."""


def flatten(value: Any, prefix: str = "", out: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """KV_MODE=json extraction: nested keys joined by '.', array elements under 'key{}'; multivalue lists."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list):
        for v in value:
            flatten(v, f"{prefix}{{}}", out)
    elif value is not None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.setdefault(prefix, []).append(text)
    return out


class Event:
    __slots__ = ("_fields", "body", "index", "indexed", "sourcetype", "time", "visible")

    def __init__(self, time_s: float, body: bytes, index: str, sourcetype: str,
                 indexed: dict[str, list[str]] | None = None, visible: float = 0.0) -> None:
        self.time = time_s
        self.visible = visible  # epoch seconds from which searches return it
        self.body = body
        self.index = index
        self.sourcetype = sourcetype
        self.indexed = indexed  # HEC `fields` (indexed fields), searchable like extracted ones
        self._fields: dict[str, list[str]] | None = None

    def field(self, name: str) -> list[str]:
        if name == "index":
            return [self.index]
        if name == "sourcetype":
            return [self.sourcetype]
        if name == "_time":
            return [str(self.time)]
        if self._fields is None:
            try:
                self._fields = flatten(jsontext.loads(self.body))
            except ValueError:  # a plain-text event (HEC accepts any string): no JSON fields
                self._fields = {}
            for k, v in (self.indexed or {}).items():
                self._fields.setdefault(k, []).extend(v)
        return self._fields.get(name, [])


def build_events(copy: SiemCopy) -> list[Event]:
    out: list[Event] = []
    for sc in copy.streams:
        st = SOURCETYPES.get(sc.stream, OFFICE_SOURCETYPE if sc.stream.startswith("o365.") else "")
        if not st:
            continue
        # searchable once the API served the record plus `ingestion_delay` (siem_copy.Row.ingested), as
        # the add-on reads the same API: not at event time
        out.extend(Event(r.ticks / TICKS_PER_SECOND, r.body, INDEX, st, visible=r.ingested / TICKS_PER_SECOND)
                   for r in sc.rows)
    out.sort(key=lambda e: e.time)
    return out


# ---------------------------------------------------------------- search terms
Term = Callable[[Event], bool]
_TERM_RE = re.compile(r'^(?P<f>[^=\s()]+)\s*(?P<op>!=|=)\s*(?P<v>.+)$')


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _terms(text: str) -> tuple[list[Term], float | None, float | None]:
    try:
        words = shlex.split(text.replace("(", " ( ").replace(")", " ) ").replace(",", " , "), posix=False)
    except ValueError as exc:
        raise SplError(f"Error in 'search' command: {exc}") from None
    terms: list[Term] = []
    earliest = latest = None
    i, negate = 0, False
    while i < len(words):
        w = words[i]
        if w == "NOT":
            negate, i = True, i + 1
            continue
        if i + 2 < len(words) and words[i + 1] == "IN" and words[i + 2] == "(":
            j = words.index(")", i)
            values = {_unquote(v) for v in words[i + 3:j] if v != ","}
            term = _in(w, values)
            i = j + 1
        else:
            m = _TERM_RE.match(w)
            if not m:
                raise SplError(f"Error in 'search' command: unsupported term {w!r}")
            f, op, v = m["f"], m["op"], _unquote(m["v"])
            if f in ("earliest", "latest"):
                stamp = float(v)
                earliest, latest = (stamp, latest) if f == "earliest" else (earliest, stamp)
                i += 1
                continue
            term = _in(f, {v}) if op == "=" else _not(_in(f, {v}))
            i += 1
        terms.append(_not(term) if negate else term)
        negate = False
    return terms, earliest, latest


def _in(field: str, values: set[str]) -> Term:
    return lambda e: any(v in values for v in e.field(field))


def _not(term: Term) -> Term:
    return lambda e: not term(e)


# ---------------------------------------------------------------- pipeline
def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def run(search: str, events: list[Event], earliest: float | None, latest: float | None,
        now: float) -> tuple[list[dict[str, Any]], bool]:
    """Evaluate a search; returns (result rows, is a reporting search)."""
    stages = [s.strip() for s in search.split("|")]
    head = stages[0]
    if not head.startswith("search "):
        raise SplError("Error in 'SearchParser': the search must start with the 'search' command")
    terms, e2, l2 = _terms(head[len("search "):])
    earliest = e2 if e2 is not None else earliest
    latest = l2 if l2 is not None else latest
    rows = [e for e in events if (earliest is None or e.time >= earliest) and (latest is None or e.time < latest)
            and e.time <= now and e.visible <= now and all(t(e) for t in terms)]
    rows.reverse()  # event searches stream newest first
    span: float | None = None
    out: list[dict[str, Any]] | None = None
    keep: list[str] | None = None
    for stage in stages[1:]:
        if m := re.fullmatch(r"bin _time span=(\d+)s", stage):
            span = float(m.group(1))
        elif stage.startswith("stats "):
            out = _stats(stage[6:], rows, span)
        elif stage == "fields - _*":
            keep = [k for k in (keep or []) if not k.startswith("_")]
        elif stage.startswith("fields "):
            keep = [f.strip() for f in stage[7:].split(",") if f.strip()] + ["_time", "_raw"]
        else:
            raise SplError(f"Unknown search command '{stage.split(' ')[0]}'.")
    if out is not None:
        return out, True
    return [_event_result(e, keep) for e in rows], False


def _event_result(e: Event, keep: list[str] | None) -> dict[str, Any]:
    names = keep if keep is not None else ["_raw", "_time", "index", "sourcetype"]
    result: dict[str, Any] = {}
    for n in names:
        if n == "_raw":
            result[n] = e.body.decode()
        elif n == "_time":
            result[n] = _iso(e.time)
        else:
            values = e.field(n)
            if values:
                result[n] = values[0] if len(values) == 1 else values
    return result


_AGG_RE = re.compile(r"^(count|dc\((?P<f>[^)]+)\))(?:\s+AS\s+(?P<a>\w+))?$", re.IGNORECASE)


def _stats(spec: str, rows: list[Event], span: float | None) -> list[dict[str, Any]]:
    aggs_text, _, by_text = spec.partition(" BY ")
    aggs = []
    for part in aggs_text.split(","):
        m = _AGG_RE.match(part.strip())
        if not m:
            raise SplError(f"Error in 'stats' command: unsupported aggregation {part.strip()!r}")
        name = m["a"] or (part.strip() if m["f"] else "count")
        aggs.append((name, m["f"]))
    keys = [k.strip() for k in by_text.split(",") if k.strip()]
    groups: dict[tuple[str, ...], list[Any]] = {}
    for e in rows:
        for key in _keys(e, keys, span):
            state = groups.setdefault(key, [0 if f is None else set() for _, f in aggs])
            for n, (_, f) in enumerate(aggs):
                if f is None:
                    state[n] += 1
                else:
                    state[n].update(e.field(f))
    out = []
    for key, state in sorted(groups.items()):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for (name, _), v in zip(aggs, state, strict=True):
            row[name] = str(v if isinstance(v, int) else len(v))
        out.append(row)
    return out


def _keys(e: Event, keys: list[str], span: float | None) -> list[tuple[str, ...]]:
    if not keys:
        return [()]
    values: list[list[str]] = []
    for k in keys:
        if k == "_time":
            t = e.time - e.time % span if span else e.time
            values.append([_iso(t)])
        else:
            values.append(e.field(k))
    if any(not v for v in values):
        return []  # stats drops events lacking a BY field
    combos: list[tuple[str, ...]] = [()]
    for v in values:
        combos = [(*c, x) for c in combos for x in v]
    return combos


# ---------------------------------------------------------------- HTTP
def _messages(status: int, text: str, kind: str = "FATAL") -> web.Response:
    return web.json_response({"messages": [{"type": kind, "text": text}]}, status=status)


class SplunkServer:
    def __init__(self, copy: SiemCopy, token: str, v2: bool, hec_token: str = "", seed: int = 0) -> None:
        self.copy = copy
        self.events = build_events(copy)
        self.token = token
        self.v2 = v2
        self.searches: list[str] = []
        self.hec = Hec(self, hec_token or token, seed)
        self.peer_rng = random.Random(f"{seed}|splunk-search-peers")
        self.peer_down_searches = 0  # tests check the fault really fired

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization")  # either scheme, case-insensitive (RFC 9110 §11.1)
        return self.token in (credentials(header, "Bearer"), credentials(header, "Splunk"))

    async def export(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/services/search/v2/") and not self.v2:
            return _messages(404, "Not Found", "ERROR")
        if not self._authorized(request):
            return _messages(401, "call not properly authenticated", "WARN")
        form = {k: v[-1] for k, v in parse_qs((await request.read()).decode(), keep_blank_values=True).items()}
        if request.method == "GET":
            form.update(request.query)
        search = form.get("search", "")
        if form.get("output_mode", "xml") != "json":
            return _messages(400, "this emulator only answers output_mode=json")
        self.searches.append(search)
        events, messages = self._peers()
        try:
            rows, reporting = run(search, events, _epoch(form.get("earliest_time")),
                                  _epoch(form.get("latest_time")), time.time())
        except (SplError, ValueError) as exc:
            return _messages(400, str(exc))
        return web.Response(body=_ndjson(rows, reporting, messages), content_type="application/json")

    def _peers(self) -> tuple[list[Event], list[dict[str, str]]]:
        """The events this search reaches: all, or only the first indexer's when the second is down."""
        p = self.copy.plan.search_peer_down
        if not p or self.peer_rng.random() >= p:
            return self.events, []
        self.peer_down_searches += 1
        text = ('Unable to distribute to peer named idx2 at uri https://idx2:8089 because peer has status = "Down". '
                "Please verify uri-scheme, connectivity to the search peer, that the search peer is up, and that "
                "an adequate level of system resources are available.")
        return [e for e in self.events if zlib.crc32(e.body) % 2 == 0], [{"type": "WARN", "text": text}]


def _epoch(value: str | None) -> float | None:
    return float(value) if value else None


def _ndjson(rows: list[dict[str, Any]], reporting: bool, messages: list[dict[str, str]] | None = None) -> bytes:
    lines: list[dict[str, Any]] = [{"preview": False, "messages": messages}] if messages else []
    if reporting and rows:  # a progress preview with partial numbers, which clients must skip
        half = {**rows[0], **{k: "0" for k in rows[0] if k != "_time"}}
        lines.append({"preview": True, "offset": 0, "result": half})
    for n, r in enumerate(rows):
        line: dict[str, Any] = {"preview": False, "offset": n, "result": r}
        if n == len(rows) - 1:
            line["lastrow"] = True
        lines.append(line)
    if not rows:
        lines.append({"preview": False, "lastrow": True})
    return b"".join(orjson.dumps(x) + b"\n" for x in lines)


# ---------------------------------------------------------------- HEC (port 8088)
# protocols.md §4d: {"text", "code"} bodies and their HTTP statuses.
HEC_CODES = {0: ("Success", 200), 1: ("Token disabled", 403), 2: ("Token is required", 401),
             3: ("Invalid authorization", 401), 4: ("Invalid token", 403), 5: ("No data", 400),
             6: ("Invalid data format", 400), 7: ("Incorrect index", 400), 8: ("Internal server error", 500),
             9: ("Server is busy", 503), 10: ("Data channel is missing", 400), 11: ("Invalid data channel", 400),
             12: ("Event field is required", 400), 13: ("Event field cannot be blank", 400),
             14: ("ACK is disabled", 400), 16: ("Query string authorization is not enabled", 400)}
_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_INDEX_RE = re.compile(r"^[a-z0-9_][a-z0-9_-]{0,79}$")


def _hec(code: int, **extra: Any) -> web.Response:
    text, status = HEC_CODES[code]
    extra_body: dict[str, Any] = {"invalid-event-number": extra.pop("event")} if "event" in extra else {}
    return web.json_response({"text": text, "code": code, **extra_body, **extra}, status=status)


def parse_events(body: bytes) -> list[Any]:
    """HEC batch: JSON objects concatenated (whitespace between them allowed), not a JSON array."""
    import json

    text, pos = body.decode("utf-8"), 0
    out: list[Any] = []
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


class Hec:
    """HTTP Event Collector with indexer acknowledgement (useACK=1): channels, ackIds, late or lost acks."""

    def __init__(self, server: SplunkServer, token: str, seed: int) -> None:
        import random

        self.server = server
        self.token = token
        self.rng = random.Random(f"{seed}|hec")
        self.channels: dict[str, dict[int, float | None]] = {}  # channel -> ackId -> ready at (None: lost)
        self.next_ack: dict[str, int] = {}

    def _auth(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if "token" in request.query:
            return _hec(16)
        if not auth:
            return _hec(2)
        token = credentials(auth, "Splunk")  # scheme case-insensitive (RFC 9110 §11.1)
        if token is None:
            return _hec(3)
        if token != self.token:
            return _hec(4)
        return None

    def _channel(self, request: web.Request) -> tuple[str, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel", "")
        if not channel:
            return "", _hec(10)
        if not _GUID_RE.match(channel):
            return "", _hec(11)
        return channel.lower(), None

    async def event(self, request: web.Request) -> web.Response:
        copy = self.server.copy
        copy.ingest_requests["splunk"] = copy.ingest_requests.get("splunk", 0) + 1
        if (denied := self._auth(request)) is not None:
            return denied
        channel, bad = self._channel(request) if copy.plan.hec_ack else ("", None)
        if bad is not None:
            return bad
        raw = await request.read()
        if not raw.strip():
            return _hec(5)
        try:
            items = parse_events(raw)
        except (ValueError, UnicodeDecodeError):
            return _hec(6)
        events: list[Event] = []
        for n, item in enumerate(items):
            if not isinstance(item, dict):
                return _hec(6, event=n)
            if "event" not in item:
                return _hec(12, event=n)
            if item["event"] in ("", None, {}):
                return _hec(13, event=n)
            index = item.get("index", INDEX)
            if not isinstance(index, str) or not _INDEX_RE.match(index):
                return _hec(7, event=n)
            when = item.get("time", time.time())
            try:
                when = float(when)
            except (TypeError, ValueError):
                return _hec(6, event=n)
            fields = item.get("fields") or {}
            indexed = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in fields.items()}
            if "host" in item:
                indexed["host"] = [str(item["host"])]
            if "source" in item:
                indexed["source"] = [str(item["source"])]
            body = item["event"] if isinstance(item["event"], str) else orjson.dumps(item["event"]).decode()
            # `ingest_latency`: searchable a while after HEC took it (queues, indexing), acked or not
            events.append(Event(when, body.encode(), index, str(item.get("sourcetype", "httpevent")), indexed,
                                visible=time.time() + copy.plan.ingest_latency / TICKS_PER_SECOND))
        plan = copy.plan
        if plan.ingest_throttle and self.rng.random() < plan.ingest_throttle:
            return _hec(9)
        if plan.ingest_server_error and self.rng.random() < plan.ingest_server_error:
            return _hec(8)
        for ev in events:
            bisect.insort(self.server.events, ev, key=lambda e: e.time)
            rid = next((v[0] for v in (ev.field("id"), ev.field("Id")) if v), "")
            copy.ingested.append(Ingested("splunk", ev.sourcetype, rid, int(ev.time * TICKS_PER_SECOND)))
        if plan.ingest_lost_response and self.rng.random() < plan.ingest_lost_response:
            return _hec(8)  # indexed anyway
        if not plan.hec_ack:
            # A token without indexer acknowledgement (Splunk Cloud: "HEC supports indexer acknowledgment
            # in Splunk Enterprise only", help.splunk.com "About HTTP Event Collector Indexer
            # Acknowledgment"): the 200 says the data looked valid, nothing about indexing; no ackId.
            return _hec(0)
        ack = self.next_ack.get(channel, 0)
        self.next_ack[channel] = ack + 1
        lost = plan.hec_ack_lost and self.rng.random() < plan.hec_ack_lost
        ready = None if lost else time.time() + plan.hec_ack_delay / TICKS_PER_SECOND
        self.channels.setdefault(channel, {})[ack] = ready
        return _hec(0, ackId=ack)

    async def ack(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if not self.server.copy.plan.hec_ack:
            return _hec(14)  # "ACK is disabled": the token has no indexer acknowledgement
        channel, bad = self._channel(request)
        if bad is not None:
            return bad
        try:
            asked = orjson.loads(await request.read()).get("acks")
            ids = [int(a) for a in asked]
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return _hec(6)
        pending = self.channels.get(channel, {})
        now, out = time.time(), {}
        for a in ids:
            ready = pending.get(a)
            out[str(a)] = ready is not None and ready <= now
            if out[str(a)]:
                del pending[a]  # Splunk forgets an ackId once it has reported it true
        return web.json_response({"acks": out})

    async def debug(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.copy.ingested_view("splunk"))


def hec_app(server: SplunkServer) -> web.Application:
    """The `splunk_hec` service (HEC port 8088): event and ack endpoints."""
    application = web.Application(client_max_size=8 << 20)
    application[STATE] = server
    for path in ("/services/collector/event", "/services/collector", "/services/collector/event/1.0"):
        application.router.add_post(path, server.hec.event)
    application.router.add_post("/services/collector/ack", server.hec.ack)
    application.router.add_get("/_emulator/ingested", server.hec.debug)
    return application


def app(copy: SiemCopy, *, token: str, v2: bool = True, server: SplunkServer | None = None) -> web.Application:
    """The `splunk` service (management port): documented paths under `https://<host>:8089`."""
    server = server or SplunkServer(copy, token, v2)
    application = web.Application(client_max_size=8 << 20)
    application[STATE] = server
    for path in ("/services/search/v2/jobs/export", "/services/search/jobs/export"):
        application.router.add_route("POST", path, server.export)
        application.router.add_route("GET", path, server.export)
    return application


STATE = web.AppKey("splunk", SplunkServer)  # tests and server.py read the service state through this key
