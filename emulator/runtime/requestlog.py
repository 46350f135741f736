"""The request log (`--request-log`, default STATE_DIR/requests.ndjson): one NDJSON line per request
answered by the login, Graph and Management services, so quota use and throttling can be compared
between collectors run against the same scenario.

`{"time","client","app","host","method","path","status","throttled","fault","ms"}`: `client` is the
User-Agent, `app` the app id of the bearer token (or the `client_id` of a token request),
`fault` the injected fault or documented limit this request met (see the fault log), `throttled`
true for `quota` and `throttle` faults (a 429, or an AF429 with its configured status).
"""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from typing import IO
from urllib.parse import unquote_plus

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from emulator.microsoft.tokens import credentials
from emulator.world.clock import now_ticks, rfc3339

FAULT_KEY = "emulator.fault"  # request[FAULT_KEY]: what FaultInjector.log recorded for this request
THROTTLES = frozenset(("quota", "throttle"))


def _app_id(request: web.Request) -> str:
    """The `appid` claim of the bearer token, read without verification (identification only)."""
    token = credentials(request.headers.get("Authorization"), "Bearer")
    if not token:
        return ""
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return ""
    return str(claims.get("appid", "")) if isinstance(claims, dict) else ""


def _basic_client_id(request: web.Request) -> str:
    """The client id of a token request authenticated with `client_secret_basic`."""
    raw = credentials(request.headers.get("Authorization"), "Basic")
    try:
        return unquote_plus(base64.b64decode(raw or "", validate=True).decode().partition(":")[0])
    except (ValueError, UnicodeDecodeError):
        return ""


class RequestLog:
    """Append-only NDJSON, flushed per line; `middleware` records every request of an app."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - lives as long as the server

    def write(self, line: dict[str, object]) -> None:
        with self._lock:
            if self._file.closed:  # a request still in flight when shutdown closed the log (SIGTERM)
                return
            self._file.write(orjson.dumps(line) + b"\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        stamp = now_ticks()
        app = _app_id(request)
        if not app and request.method == "POST" and request.path.endswith("/token"):
            form = await request.post()  # cached: the token endpoint reads the same form
            app = str(form.get("client_id", "")) or _basic_client_id(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            fault = request.get(FAULT_KEY)
            self.write(
                {
                    "time": rfc3339(stamp),
                    "client": request.headers.get("User-Agent", ""),
                    "app": app,
                    "host": request.host,
                    "method": request.method,
                    "path": request.path_qs,
                    "status": status,
                    "throttled": fault in THROTTLES,
                    "fault": fault,
                    "ms": round((time.monotonic() - started) * 1000, 1),
                }
            )
