"""Health and readiness of `agent run`: what the service knows of each stream, and the listener that
serves it (`/metrics` for Prometheus, `/healthz` for liveness, `/readyz` for readiness).

Readiness is about this agent's ability to collect and to check: credentials failing, the store
failing, a stream stalled, the SIEM not verifiable, or an alert channel down each make `/readyz`
answer 503 with the reason. A silent stream (Microsoft delivers far too little) is alerted, but
does not make the agent unready.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from agent.errors import AgentError
from agent.service.alerts import failure_kind
from agent.service.metrics import CONTENT_TYPE, Metrics


@dataclass
class StreamHealth:
    last_success: float | None = None  # wall clock
    last_error: str | None = None
    last_error_kind: str | None = None  # the error's class name, as status and alerts show it
    last_error_type: type[Exception] | None = None
    passes: int = 0
    silent_since: datetime | None = None  # the first settled hour found silent in the current episode
    quiet_checked: datetime | None = None  # the last settled hour found NOT silent (counts only grow)
    stored: int = 0  # records this service's passes stored for the stream
    # (settled hour, `stored`, monotonic time) when the stream was last found silent: the same answer
    # until this service stores more, the hour moves or SILENT_RECHECK passes (agent/service/silence.py)
    silent_checked: tuple[datetime, int, float] | None = None


@dataclass
class Health:
    started: float = field(default_factory=time.time)
    streams: dict[tuple[str, str], StreamHealth] = field(default_factory=dict)
    store_ok: bool = True
    store_error: str | None = None
    siem_unverified_since: float | None = None  # first scheduled reconcile of the "could not verify" episode
    siem_unverified_reason: str | None = None
    labels: dict[str, str] = field(default_factory=dict)  # tenant GUID -> its label, as status shows it

    def stalled(self, threshold: float, now: float | None = None) -> list[tuple[str, str]]:
        """Streams without a successful pass for longer than `threshold` (since start if never).

        A silent stream (the agent works, upstream delivers far too little) is alerted but is not
        "stalled": readiness is about this agent's ability to collect, not about Microsoft's volume.
        """
        now = time.time() if now is None else now
        return [k for k, h in self.streams.items() if now - (h.last_success or self.started) > threshold]

    def problems(self, threshold: float) -> list[str]:
        out = [f"store: {self.store_error}"] if not self.store_ok else []
        name = self.labels.get
        out += [f"credentials: {name(t, t)}/{s}: {h.last_error}" for (t, s), h in self.streams.items()
                if failure_kind(h.last_error_type)[0] == "credentials_failing"]
        out += [f"stalled: {name(t, t)}/{s}" for t, s in self.stalled(threshold)]
        if self.siem_unverified_since is not None:  # reconcile runs but cannot check: not "all good"
            since = datetime.fromtimestamp(self.siem_unverified_since, UTC)
            out.append(f"siem: could not verify since {since:%Y-%m-%dT%H:%M:%SZ}: {self.siem_unverified_reason}")
        return out


class HealthServer:
    """The service's HTTP listener; `start` binds it, `stop` (or the owner's exit stack) closes it.

    `failing` returns the alert channels whose last delivery failed (webhook -> why): an agent
    that cannot tell anyone about a gap is not ready either."""

    def __init__(self, listen: str, metrics: Metrics, health: Health, stall_threshold: float,
                 tenants: Mapping[str, str], failing: Callable[[], Mapping[str, str]] = dict) -> None:
        self.listen = listen
        self.metrics = metrics
        self.health = health
        self.stall_threshold = stall_threshold
        self.tenants = dict(tenants)  # label -> GUID
        self.failing = failing
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Listen on `[service] listen`; returns the bound port (an OS-chosen one for port 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        host, _, port = self.listen.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        try:
            await site.start()
        except OSError as exc:  # e.g. a second `agent run` on the same port: one line, not a bug report
            await self.stop()
            why = "address already in use (is another `agent run` listening?)" if exc.errno == errno.EADDRINUSE \
                else (exc.strerror or str(exc))
            raise AgentError(f"cannot listen on {self.listen} ([service] listen): {why}") from None
        bound = [a for a in runner.addresses if isinstance(a, tuple)]  # (host, port, ...) of each socket
        self.port = int(bound[0][1]) if bound else int(port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def metrics_page(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(self, _: web.Request | None = None) -> web.Response:
        problems = self.health.problems(self.stall_threshold)
        problems += [f"alerts: webhook {hook} failing: {why}" for hook, why in self.failing().items()]
        return web.json_response({"ready": not problems, "problems": problems, "tenants": self.tenants},
                                 status=503 if problems else 200)
