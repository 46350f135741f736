"""Fault injection on the data APIs (never on login), drawn per request from `[faults]`, and the
fault log that later explains what the agent had to survive.

The service modules build the API-specific bodies (Graph JSON, AF codes); this module owns the
draw, the log, and the transport-level faults (connection reset mid-body, truncated bodies).
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import IO

import orjson
from aiohttp import web

from emulator.runtime.requestlog import FAULT_KEY
from emulator.world.clock import now_ticks, rfc3339
from emulator.world.scenario import Faults, Stall

HTML_ERROR = (
    b"<!DOCTYPE html>\r\n<html><head><title>Service Unavailable</title>"
    b'<meta http-equiv="Content-Type" content="text/html; charset=us-ascii"></head>\r\n'
    b"<body><h2>Service Unavailable</h2><hr><p>HTTP Error 503. The service is unavailable.</p>"
    b"</body></html>\r\n"
)


class FaultInjector:
    """Seeded per-request draws plus an append-only NDJSON log of every injected fault and throttle."""

    def __init__(self, faults: Faults, seed: int, log_path: Path) -> None:
        self.faults = faults
        self._rng = random.Random(f"{seed}|faults")
        self._lock = threading.Lock()
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - lives as long as the server

    def draw(self, list_request: bool) -> str | None:
        """The fault for this request, if any; `empty_page` only applies to listings."""
        u = self._rng.random()
        for kind, p in self.faults.probabilities():
            if u < p:
                return None if kind == "empty_page" and not list_request else kind
            u -= p
        return None

    def choice(self, options: tuple[int, ...]) -> int:
        return self._rng.choice(options)

    def log(
        self, request: web.Request, api: str, kind: str, status: int, tenant: str = "", **covers: object
    ) -> None:
        """One fault-log line; `covers` says which records the faulted request was about (Graph:
        `streams`, `newest`, `oldest`; Management: `stream`, `created_from`, `created_to`, `content_id`),
        so a lost record can be traced to the fault that may have cost it."""
        line: dict[str, object] = {
            "time": rfc3339(now_ticks()),
            "api": api,
            "tenant": tenant,
            "method": request.method,
            "path": request.path_qs,
            "fault": kind,
            "status": status,
        }
        line.update(covers)
        request[FAULT_KEY] = kind
        with self._lock:
            if self._log.closed:  # a handler still running after shutdown closed the log (SIGTERM)
                return
            self._log.write(orjson.dumps(line) + b"\n")
            self._log.flush()

    def close(self) -> None:
        with self._lock:
            self._log.close()

    async def corrupt(self, request: web.Request, kind: str, response: web.Response) -> web.StreamResponse:
        """Send `response` damaged: `reset` drops the connection mid-body; `truncated` cuts the body
        short, either with an honest Content-Length (JSON cut short) or promising more than is sent."""
        body = bytes(response.body) if isinstance(response.body, bytes | bytearray) else b""
        cut = max(1, len(body) // 2)
        if kind == "truncated" and self._rng.random() < 0.5:
            return web.Response(status=response.status, body=body[:cut], headers=response.headers)
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[:cut])
        await asyncio.sleep(0.02)  # let the partial body reach the client before the cut
        transport = request.transport
        if transport is not None:
            if kind == "reset":
                transport.abort()
            else:
                transport.close()
        return stream


async def stall(stalls: tuple[Stall, ...], request: web.Request, api: str, injector: FaultInjector) -> None:
    """Answer late while a `[[<api>.stall]]` window is open (a slow service, not an error)."""
    now = now_ticks()
    for s in stalls:
        if s.start <= now < s.end:
            injector.log(request, api, "stall", 0)
            await asyncio.sleep(s.delay)
            return
