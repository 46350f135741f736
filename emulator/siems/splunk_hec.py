"""Emulated Splunk HTTP Event Collector (port 8088) with indexer acknowledgement (useACK=1):
the `{"text", "code"}` answers and their statuses (protocols.md §4d), channels, ackIds, acks that
come late or never, and ingest faults from the scenario's `[siem]` plan. What HEC indexes joins the
events the search export reads (`splunk.py`).
"""

from __future__ import annotations

import bisect
import json
import random
import re
import time
from typing import Any

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems.siem_copy import TICKS_PER_SECOND, Ingested, SiemCopy
from emulator.siems.splunk_spl import INDEX, Event

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

    def __init__(self, copy: SiemCopy, events: list[Event], token: str, seed: int) -> None:
        """`events` is the search side's list: what HEC indexes becomes searchable there."""
        self.copy = copy
        self.events = events
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
        copy = self.copy
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
            bisect.insort(self.events, ev, key=lambda e: e.time)
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
        if not self.copy.plan.hec_ack:
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
        return web.json_response(self.copy.ingested_view("splunk"))
