"""`agent run`: the long-running service.

One task per (tenant, stream) collects on its own cadence; a crashed task restarts with backoff
without touching the others. Around them: the metrics/health listener, the watchdog ping for
systemd, scheduled checks for stalled or silent streams, and (when configured) scheduled
reconcile. Shutdown on SIGTERM/SIGINT cancels the tasks: a window interrupted mid-way has not
moved its cursor, so the next start re-fetches it — nothing is lost, within a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from agent.archive.archive import Archive
from agent.collect import Collector, StreamOutcome
from agent.config import Config, TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient, Response, backoff
from agent.logs import event, scrub
from agent.service.alerts import Alert, Alerter
from agent.service.metrics import CONTENT_TYPE, Metrics
from agent.store import open_store
from agent.store.base import Store
from agent.streams import spec

log = logging.getLogger("agent.service.supervisor")


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's notify socket, if we run under Type=notify.

    Never blocks: this runs on the event loop, and a full socket queue (a notify reader that
    stalls; net.unix.max_dgram_qlen is 10 by default) would otherwise freeze every task, the
    SIGTERM handler included. A lost WATCHDOG=1 is harmless, the next one follows soon.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode())
    except OSError as exc:  # BlockingIOError (queue full), ECONNREFUSED, ENOENT ...
        log.debug("sd_notify failed", extra={"fields": {"message": message, "error": str(exc)}})
        return False
    return True


def shard_tenants(tenants: tuple[TenantConfig, ...], shard: tuple[int, int]) -> tuple[TenantConfig, ...]:
    """Static sharding: tenant i (in config order) goes to agent i mod n, so n agents share one bucket."""
    index, count = shard
    return tuple(t for i, t in enumerate(tenants) if i % count == index)


def app_shares(tenants: tuple[TenantConfig, ...], shard: tuple[int, int]) -> dict[str, float]:
    """Per app registration (client_id): the share of its tenants that this shard collects. The
    per-app reports quota spans all tenants (learn.microsoft.com/graph/throttling-limits), so n
    agents of one app must split it instead of each assuming the whole of it."""
    mine = shard_tenants(tenants, shard)
    return {app: sum(t.client_id == app for t in mine) / sum(t.client_id == app for t in tenants)
            for app in {t.client_id for t in mine}}


@dataclass
class StreamHealth:
    last_success: float | None = None  # wall clock
    last_error: str | None = None
    last_error_kind: str | None = None
    passes: int = 0
    silent_since: datetime | None = None  # the first settled hour found silent in the current episode
    quiet_checked: datetime | None = None  # the last settled hour found NOT silent (counts only grow)


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
                if h.last_error_kind == "AuthError"]
        out += [f"stalled: {name(t, t)}/{s}" for t, s in self.stalled(threshold)]
        if self.siem_unverified_since is not None:  # reconcile runs but cannot check: not "all good"
            since = datetime.fromtimestamp(self.siem_unverified_since, UTC)
            out.append(f"siem: could not verify since {since:%Y-%m-%dT%H:%M:%SZ}: {self.siem_unverified_reason}")
        return out


class Service:
    def __init__(self, cfg: Config, shard: tuple[int, int] = (0, 1),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), hard_exit: bool = False) -> None:
        self.cfg = Config(**{**cfg.__dict__, "tenants": shard_tenants(cfg.tenants, shard)})
        # every tenant, for what is not sharded: the app registration that reads the SIEM ([siem] tenant)
        self.unsharded = cfg
        self.shard = shard
        self.app_share = app_shares(cfg.tenants, shard)
        self.hard_exit = hard_exit  # `agent run`: guarantee the exit bound even if a thread hangs
        self.metrics = Metrics()
        self.health = Health()
        self.clock = clock
        self.stop = asyncio.Event()
        self.first_pass = asyncio.Event()  # every stream has finished (or failed) one pass
        self.listen_port: int | None = None
        self._pending: set[asyncio.Task[bool]] = set()
        for t in self.cfg.tenants:
            self.metrics.tenant_info.labels(t.id, t.label).set(1)
            self.health.labels[t.id] = t.label
            for s in t.streams:
                self.health.streams[(t.id, s)] = StreamHealth()
                # every series exists from the start: an absent series cannot be alerted on
                for metric in (self.metrics.records, self.metrics.bytes, self.metrics.windows_failed,
                               self.metrics.quarantined):
                    metric.labels(t.id, s)
                self.metrics.stalled.labels(t.id, s).set(0)
                self.metrics.silent.labels(t.id, s).set(0)
                if self.cfg.siem:
                    self.metrics.reconcile_unverified.labels(t.id, s).set(0)
                    self.metrics.reconcile_last_complete.labels(t.id, s).set(0)

    # ----------------------------------------------------------------- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        try:
            return await self._run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(HttpClient(self.cfg.http, observe=self._observe))
            store = open_store(self.cfg.store)
            stack.push_async_callback(store.aclose)
            archive = Archive(store)
            self.collector = Collector(self.cfg, archive, http, clock=self.clock, app_share=self.app_share)
            self.alerter = Alerter(self.cfg.alerts, http, store, self.metrics, shard=self.shard)
            await self._start_listener(stack)
            tasks = [asyncio.create_task(self._supervise(f"{t.id}/{s}", functools.partial(self._stream_loop, t, s)))
                     for t in self.cfg.tenants for s in t.streams]
            tasks += [asyncio.create_task(self._supervise(name, fn)) for name, fn in self._periodic(store, archive)]
            sd_notify("READY=1")
            event(log, logging.INFO, "Service started.", tenants=len(self.cfg.tenants), tasks=len(tasks),
                  listen=f"{self.cfg.service.listen.rsplit(':', 1)[0]}:{self.listen_port}",
                  shard=f"{self.shard[0]}/{self.shard[1]}")
            await self.stop.wait()
            sd_notify("STOPPING=1")
            event(log, logging.INFO, "Shutting down; interrupted windows keep their cursors.")
            started = time.monotonic()
            if self.hard_exit:
                _exit_guard(self.cfg.service.shutdown_timeout.total_seconds() + EXIT_MARGIN)
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=self.cfg.service.shutdown_timeout.total_seconds())
            if pending:
                event(log, logging.WARNING, "Some tasks did not stop in time.", pending=len(pending))
        event(log, logging.INFO, "Service stopped.", seconds=round(time.monotonic() - started, 3))
        return 0

    def _periodic(self, store: Store, archive: Archive) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        jobs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("watchdog", self._watchdog),
            ("store-probe", lambda: self._store_probe(store)),
            ("stall-check", lambda: self._stall_loop(archive)),
        ]
        if self.cfg.siem:
            from agent.reconcile.schedule import reconcile_loop

            jobs.append(("reconcile", lambda: reconcile_loop(self, archive)))
        from agent.triangulate.engine import pairs_for
        from agent.triangulate.schedule import triangulate_loop
        from agent.triangulate.witness import witnessed

        # Microsoft's sibling pipelines, or a stream Entra's summarized sign-ins count
        if any(pairs_for(t.streams, None) or witnessed(t.streams, None) for t in self.cfg.tenants):
            jobs.append(("triangulate", lambda: triangulate_loop(self, archive)))
        if self.cfg.service.notices:
            from agent.sources.graph.notices import notices_loop

            jobs.append(("notices", lambda: notices_loop(self, archive)))
        return jobs

    async def _supervise(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Restart a task that crashed (a bug, not an API error) with backoff; others keep running."""
        attempt = 0
        cap = self.cfg.service.restart_backoff_max.total_seconds()
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a crashed task must not take the service down
                if time.monotonic() - began > max(cap, 60.0):
                    attempt = 0  # it ran healthily for a while: a new crash starts the backoff afresh
                self.metrics.restarts.labels(name).inc()
                delay = min(backoff(attempt, base=2), cap)
                log.exception("Task crashed; restarting.", extra={"fields": {"task": name, "delay": round(delay, 1)}})
                await self.task_failed(name, exc, logged=True)
                attempt += 1
                await self._sleep(delay)

    async def task_failed(self, task: str, exc: BaseException, *, logged: bool = False) -> None:
        """A loop of the service hit an error it did not expect: log it (with the trace), alert at
        most once an hour per task, and return so the loop keeps going. Never raises: the alert
        channel (or the store remembering alerts) may be what is failing."""
        if not logged:
            log.error("Task failed; it keeps running.", exc_info=exc,
                      extra={"fields": {"task": task, "kind": type(exc).__name__}})
        try:
            await self.alerter.send(Alert(
                "task_failed", f"task_failed:{task}:{int(time.time() // 3600)}", "An agent task failed",
                f"The service's {task} task failed ({type(exc).__name__}: {scrub(str(exc))}); it keeps running and "
                "retries. Until it succeeds, what it checks is not checked.",
                fields={"task": task, "kind": type(exc).__name__}))
        except Exception as alert_exc:  # noqa: BLE001 - reported in the log; the loop must go on
            event(log, logging.ERROR, "Could not send the task failure alert.", task=task, error=str(alert_exc))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    # ----------------------------------------------------------------- collection
    async def _stream_loop(self, tenant: TenantConfig, stream: str) -> None:
        while not self.stop.is_set():
            outcome = await self.collector.collect_stream(tenant, stream)
            await self._record(tenant, outcome)
            await self._sleep(self.cfg.collection.poll_interval.total_seconds())

    async def _record(self, tenant: TenantConfig, o: StreamOutcome) -> None:
        m, labels = self.metrics, (o.tenant, o.stream)
        h = self.health.streams.setdefault(labels, StreamHealth())
        m.records.labels(*labels).inc(o.stored)
        m.duplicates.labels(*labels).inc(o.duplicates)
        m.bytes.labels(*labels).inc(o.bytes)
        m.quarantined.labels(*labels).inc(o.quarantined_segments)
        m.passes.labels(*labels, "ok" if o.ok else "failed").inc()
        if o.cursor is not None:
            m.cursor.labels(*labels).set(o.cursor.timestamp())
            m.lag.labels(*labels).set((self.clock() - o.cursor).total_seconds())
        m.gaps.labels(*labels).set(o.gaps_total)
        h.passes += 1
        if o.error is None:
            # A pass that recorded a new gap still collected everything else: the stream is not
            # stalled, and the gap has its own alert below.
            h.last_success, h.last_error, h.last_error_kind = time.time(), None, None
            m.last_success.labels(*labels).set(h.last_success)
        else:
            h.last_error, h.last_error_kind = o.error, o.error_kind
            m.windows_failed.labels(*labels).inc()
            await self.alerter.send(_failure_alert(tenant, o))
        for gap in o.new_gaps:
            await self.alerter.send(Alert(
                "agent_gap", f"agent_gap:{o.tenant}:{o.stream}:{gap.key}",
                "Records lost before the agent could fetch them",
                f"{o.stream} of tenant {tenant.label}: {gap.reason}. "
                "These records exist in neither the archive nor (possibly) the SIEM.",
                fields={"tenant": tenant.label, "stream": o.stream, **{k: str(v) for k, v in gap.to_doc().items()}}))
        if not self.first_pass.is_set() and all(x.passes for x in self.health.streams.values()):
            self.first_pass.set()

    def _observe(self, tag: tuple[str, str], resp: Response) -> None:
        tenant, api = tag
        self.metrics.requests.labels(tenant, api, str(resp.status)).inc()
        if resp.status == 429 or (resp.status == 403 and b"AF429" in resp.body[:300]):
            self.metrics.throttled.labels(tenant, api).inc()
        if resp.status in (400, 403) and any(c in resp.body[:500] for c in LICENCE_CODES):
            self._alert_soon(licence_alert(self._label(tenant), tenant, api))

    def _label(self, tenant_id: str) -> str:
        return next((t.label for t in self.cfg.tenants if t.id == tenant_id), tenant_id)

    def _alert_soon(self, alert: Alert) -> None:
        """Send from a synchronous hook: the task is kept until done (the loop holds tasks weakly)."""
        alerter = getattr(self, "alerter", None)
        if alerter is None:
            return
        task = asyncio.get_running_loop().create_task(alerter.send(alert))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ----------------------------------------------------------------- health
    async def _watchdog(self) -> None:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
        if not usec:
            return
        while not self.stop.is_set():
            sd_notify("WATCHDOG=1")  # proves the event loop runs; data problems are alerted, not restarted
            await self._sleep(usec / 2e6)

    async def _store_probe(self, store: Store) -> None:
        while not self.stop.is_set():
            try:
                probe = getattr(store, "check", None)
                if probe is not None:
                    await probe()
                self.health.store_ok, self.health.store_error = True, None
            except Exception as exc:  # noqa: BLE001 - any failure means "not writable"
                self.health.store_ok, self.health.store_error = False, str(exc)
                await self.alerter.send(Alert("store_failing", f"store_failing:{int(time.time() // 3600)}",
                                              "Archive store is failing", str(exc)))
            await self._sleep(60)

    async def _stall_loop(self, archive: Archive) -> None:
        threshold = self.cfg.service.stall_threshold.total_seconds()
        while not self.stop.is_set():
            await self._sleep(min(60.0, threshold / 4))
            for tenant in self.cfg.tenants:
                for stream in tenant.streams:
                    try:
                        await self._check_stream(archive, tenant, stream, threshold)
                    except Exception as exc:  # noqa: BLE001 - e.g. a damaged segment: the other streams are still checked
                        await self.task_failed(f"stall-check:{tenant.id}/{stream}", exc)

    async def _check_stream(self, archive: Archive, tenant: TenantConfig, stream: str, threshold: float) -> None:
        h = self.health.streams.setdefault((tenant.id, stream), StreamHealth())
        labels = (tenant.id, stream)
        stalled = labels in self.health.stalled(threshold)
        self.metrics.stalled.labels(*labels).set(1 if stalled else 0)
        if stalled:
            since = h.last_success or self.health.started
            # Identity: the stream and the last success; a stream that recovers and stalls again alerts again.
            await self.alerter.send(Alert(
                "stream_stalled", f"stream_stalled:{tenant.id}:{stream}:{int(since)}", "Stream is stalled",
                f"{stream} of tenant {tenant.label} has had no successful collection since "
                f"{datetime.fromtimestamp(since, UTC):%Y-%m-%d %H:%M:%SZ}. {_stall_cause(h)}",
                fields={"tenant": tenant.label, "stream": stream, "error_kind": h.last_error_kind or ""}))
        hour = settled_hour(stream, self.clock())
        if h.quiet_checked == hour:
            return  # this hour already reached its baseline; archive counts only grow
        from agent.service import silence

        verdict = await silence.check(archive, tenant.id, stream, hour, self.cfg.service.silence_ratio)
        if not verdict.silent:
            h.quiet_checked, h.silent_since = hour, None
            self.metrics.silent.labels(*labels).set(0)
            return
        self.metrics.silent.labels(*labels).set(1)
        h.silent_since = h.silent_since or hour
        # Identity: the episode (its first silent hour), so a silence lasting hours alerts once.
        await self.alerter.send(Alert(
            "stream_silent", f"stream_silent:{tenant.id}:{stream}:{h.silent_since:%Y-%m-%dT%H}", "Stream is silent",
            f"{stream} of tenant {tenant.label}: {verdict.describe()}. The shape of a silent upstream loss "
            "(as in September 2024); collection itself works.",
            fields={"tenant": tenant.label, "stream": stream, "hour": f"{hour:%Y-%m-%dT%H:00Z}",
                    "seen": verdict.seen, "expected": round(verdict.expected or 0)}))

    async def _start_listener(self, stack: AsyncExitStack) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, _, port = self.cfg.service.listen.rpartition(":")
        site = web.TCPSite(runner, host.strip("[]"), int(port))
        try:
            await site.start()
        except OSError as exc:  # e.g. a second `agent run` on the same port: one line, not a bug report
            why = "address already in use (is another `agent run` listening?)" if exc.errno == errno.EADDRINUSE \
                else (exc.strerror or str(exc))
            raise AgentError(f"cannot listen on {self.cfg.service.listen} ([service] listen): {why}") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.listen_port = sockets[0].getsockname()[1] if sockets else int(port)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        problems = self.health.problems(self.cfg.service.stall_threshold.total_seconds())
        failing = getattr(getattr(self, "alerter", None), "failing", {})
        problems += [f"alerts: webhook {hook} failing: {why}" for hook, why in failing.items()]
        return web.json_response({"ready": not problems, "problems": problems,
                                  "tenants": {t.label: t.id for t in self.cfg.tenants}},
                                 status=503 if problems else 200)


EXIT_MARGIN = 5.0  # after shutdown_timeout, for closing the store, the listener and the HTTP sessions


def _exit_guard(seconds: float) -> None:
    """End the process `seconds` from now whatever it is doing.

    Cancelling the tasks bounds the event loop's share of a shutdown, but not a thread: an S3 put
    in boto3's thread pool (connect and read timeouts, retries) keeps `asyncio.run` and the
    interpreter from exiting for minutes, past systemd's TimeoutStopSec. An unfinished window has
    not moved its cursor, so exiting hard costs a re-fetch, never a gap.
    """
    def expire() -> None:
        event(log, logging.ERROR, "Shutdown exceeded its bound; exiting now. Unfinished windows keep their "
              "cursors and are fetched again at the next start.", seconds=seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True  # never keeps the process alive itself
    timer.start()


async def wait_first_pass(service: Service, within: float) -> None:
    """Until every stream finished one pass (or `within` seconds): a reconcile of a half-filled archive is noise."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(service.first_pass.wait(), timeout=within)


# Graph's licence answers (signin-list.md); Microsoft also gives them intermittently to premium
# tenants (microsoft-graph-docs#14120, microsoft-graph-docs-contrib#3759).
LICENCE_CODES = (b"Authentication_RequestFromNonPremiumTenantOrB2CTenant", b"AadPremiumLicenseRequired")


def licence_alert(label: str, tenant_id: str, api: str) -> Alert:
    """At most one an hour per tenant: the agent retries, so it reports a delay, not a loss."""
    return Alert("licence_refused", f"licence_refused:{tenant_id}:{api}:{int(time.time() // 3600)}",
                 "Microsoft answered a licence error", f"Tenant {label}: Graph answered a request with a licence "
                 "error (Authentication_RequestFromNonPremiumTenantOrB2CTenant). Microsoft also gives this answer "
                 "intermittently to premium tenants, so the agent retries after a pause and collects nothing less; "
                 "a stream whose every answer is a licence error fails with LicenseError (sign-ins need Entra ID "
                 "P1 or P2).", severity="warning", fields={"tenant": label, "api": api})


def _stall_cause(h: StreamHealth) -> str:
    """Why a stream is stalled, as far as the service knows: its last error, or that no pass ended."""
    if h.last_error:
        return f"Last error: {h.last_error}"
    if not h.passes:
        return "No pass has finished since the service started (a request or the store may be hanging)."
    return "No pass has failed; the current one has not finished (a request or the store may be hanging)."


def _failure_alert(tenant: TenantConfig, o: StreamOutcome) -> Alert:
    kinds = {"AuthError": "credentials_failing", "SubscriptionDisabled": "subscription_disabled",
             "StoreError": "store_failing", "ObjectExists": "store_failing"}
    kind = kinds.get(o.error_kind or "", "window_failed")
    cursor = o.cursor.isoformat() if o.cursor else "start"
    return Alert(kind, f"{kind}:{o.tenant}:{o.stream}:{cursor}",
                 {"credentials_failing": "Credentials are failing", "subscription_disabled":
                  "Management Activity subscription disabled", "store_failing": "Archive store is failing"}
                 .get(kind, "Collection window failed; cursor held"),
                 f"{o.stream} of tenant {tenant.label}: {o.error}",
                 fields={"tenant": tenant.label, "stream": o.stream, "error_kind": o.error_kind})


def settled_hour(stream: str, now: datetime) -> datetime:
    """The start of the last hour that ended at least the stream's settle time before `now`."""
    return (now - spec(stream).silence_settle).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


async def is_silent(archive: Archive, tenant: str, stream: str, now: datetime, ratio: float) -> bool:
    """True when the last settled hour is silent (agent/service/silence.py: baseline and count model)."""
    from agent.service import silence

    return (await silence.check(archive, tenant, stream, settled_hour(stream, now), ratio)).silent
