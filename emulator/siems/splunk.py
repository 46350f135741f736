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

This module is the search export over HTTP and the two apps; the SPL subset is `splunk_spl.py`,
the HTTP Event Collector `splunk_hec.py`.
"""

from __future__ import annotations

import random
import time
import zlib
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from emulator.microsoft.tokens import credentials
from emulator.siems.siem_copy import SiemCopy
from emulator.siems.splunk_hec import Hec
from emulator.siems.splunk_spl import Event, SplError, build_events, run


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
        self.hec = Hec(copy, self.events, hec_token or token, seed)
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
