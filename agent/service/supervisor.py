"""`agent run`: the long-running service.

One task per (tenant, stream) collects on its own cadence; a crashed task restarts with backoff
without touching the others. Around them: the metrics/health listener (health.py), the watchdog
ping for systemd (systemd.py), scheduled checks for stalled or silent streams, and (when
configured) scheduled reconcile, triangulation and Microsoft's notices, each a loop beside what it
checks that gets only the resources it uses from the one `Runtime` (agent/app.py) and a `Pace`.
Shutdown on SIGTERM/SIGINT cancels the tasks: a window interrupted mid-way has not moved its
cursor, so the next start re-fetches it — nothing is lost, within a bounded time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from agent.app import Runtime
from agent.archive.archive import Archive
from agent.auth import TokenProvider
from agent.backfill.policy import ScheduledBackfill
from agent.collect import Collector, StreamOutcome
from agent.config import Config, TenantConfig
from agent.errors import ConfigError
from agent.http import RateLimiter, Response, backoff
from agent.logs import event, scrub
from agent.reconcile.schedule import Findings, reconcile_loop
from agent.service import silence
from agent.service.alerts import Alert, Alerter, failure_kind
from agent.service.health import Health, HealthServer, StreamHealth
from agent.service.metrics import Metrics
from agent.service.pace import Pace
from agent.service.systemd import EXIT_MARGIN, exit_guard, sd_notify, watchdog
from agent.siem.base import Siem
from agent.siem.config import SiemConfig
from agent.sources.graph.notices import notices_loop
from agent.store.base import Store
from agent.triangulate.engine import pairs_for
from agent.triangulate.schedule import triangulate_loop
from agent.triangulate.witness import witnessed

log = logging.getLogger("agent.service.supervisor")


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


def periodic(cfg: Config) -> list[str]:
    """The service's periodic tasks for `cfg` (besides one collection task per stream)."""
    names = ["watchdog", "store-probe", "stall-check"]
    if cfg.siem:
        names.append("reconcile")
    # Microsoft's sibling pipelines, or a stream Entra's summarized sign-ins count
    if any(pairs_for(t.streams, None) or witnessed(t.streams, None) for t in cfg.tenants):
        names.append("triangulate")
    if cfg.service.notices:
        names.append("notices")
    return names


class Service:
    """`agent run`: the tasks, their restarts, and what they report (metrics, health, alerts).

    The shared resources come from one `Runtime`; each loop gets the few of them it uses."""

    alerter: Alerter  # set by `run` (it needs the HTTP client and the store)
    collector: Collector

    def __init__(self, cfg: Config, shard: tuple[int, int] = (0, 1),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), hard_exit: bool = False) -> None:
        self.cfg = dataclasses.replace(cfg, tenants=shard_tenants(cfg.tenants, shard))
        # every tenant, for what is not sharded: the app registration that reads the SIEM ([siem] tenant)
        self.unsharded = cfg
        self.shard = shard
        self.app_share = app_shares(cfg.tenants, shard)
        self.hard_exit = hard_exit  # `agent run`: guarantee the exit bound even if a thread hangs
        self.metrics = Metrics()
        self.health = Health()
        self.clock = clock
        self.pace = Pace()
        self.server = HealthServer(self.cfg.service.listen, self.metrics, self.health,
                                   self.cfg.service.stall_threshold.total_seconds(),
                                   {t.label: t.id for t in self.cfg.tenants}, failing=self._failing)
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

    @property
    def stop(self) -> asyncio.Event:
        """Set it to stop the service (SIGTERM and SIGINT do)."""
        return self.pace.stop

    @property
    def first_pass(self) -> asyncio.Event:
        """Set once every stream has finished (or failed) one pass."""
        return self.pace.first_pass

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
        # The runtime gets every tenant: the [siem] tenant may be another shard's.
        async with Runtime.open(self.unsharded, observe=self._observe) as rt:
            self.collector = Collector(self.cfg, rt.archive, rt.http, clock=self.clock, app_share=self.app_share,
                                       tokens=rt.tokens)
            self.alerter = Alerter(self.cfg.alerts, rt.http, rt.store, self.metrics, shard=self.shard)
            self.listen_port = await self.server.start()
            try:
                started = await self._serve(rt)
            finally:
                await self.server.stop()
        event(log, logging.INFO, "Service stopped.", seconds=round(time.monotonic() - started, 3))
        return 0

    async def _serve(self, rt: Runtime) -> float:
        """Run every task until `stop`; returns when shutdown began (monotonic)."""
        tasks = [asyncio.create_task(self._supervise(f"{t.id}/{s}", functools.partial(self._stream_loop, t, s)))
                 for t in self.cfg.tenants for s in t.streams]
        tasks += [asyncio.create_task(self._supervise(name, self._job(name, rt))) for name in periodic(self.cfg)]
        sd_notify("READY=1")
        event(log, logging.INFO, "Service started.", tenants=len(self.cfg.tenants), tasks=len(tasks),
              listen=f"{self.cfg.service.listen.rsplit(':', 1)[0]}:{self.listen_port}",
              shard=f"{self.shard[0]}/{self.shard[1]}")
        await self.stop.wait()
        sd_notify("STOPPING=1")
        event(log, logging.INFO, "Shutting down; interrupted windows keep their cursors.")
        started = time.monotonic()
        if self.hard_exit:
            exit_guard(self.cfg.service.shutdown_timeout.total_seconds() + EXIT_MARGIN)
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=self.cfg.service.shutdown_timeout.total_seconds())
        if pending:
            event(log, logging.WARNING, "Some tasks did not stop in time.", pending=len(pending))
        return started

    def _job(self, name: str, rt: Runtime) -> Callable[[], Awaitable[None]]:
        """The body of periodic task `name`, given only what it uses."""
        svc, pace = self.cfg.service, self.pace
        jobs: dict[str, Callable[[], Awaitable[None]]] = {
            "watchdog": lambda: watchdog(pace),
            "store-probe": lambda: self._store_probe(rt.store),
            "stall-check": lambda: self._stall_loop(rt.archive),
            "reconcile": lambda: self._reconcile(rt),
            "triangulate": lambda: triangulate_loop(
                self.cfg.tenants, rt.archive, rt.http, self._graph, self.metrics, self.alerter, self.clock, pace,
                svc.reconcile_interval.total_seconds()),
            "notices": lambda: notices_loop(self.cfg.tenants, rt.http, rt.tokens, rt.archive, self.alerter, pace,
                                            svc.notices_interval.total_seconds(), self.task_failed,
                                            self.collector.leases),
        }
        return jobs[name]

    async def _reconcile(self, rt: Runtime) -> None:
        def connect() -> tuple[SiemConfig[Any], Siem]:
            siem_cfg, siem = rt.siem_config, rt.siem
            if siem_cfg is None or siem is None:
                raise ConfigError("siem: no [siem] table")
            return siem_cfg, siem

        svc = self.cfg.service
        policy = ScheduledBackfill(svc.backfill, svc.backfill_max_records, rt.archive, lambda: rt.writer,
                                   connect, self.metrics, self.alerter, self.clock, self.task_failed)
        out = Findings(rt.store, self.metrics, self.health, self.alerter, self.clock)
        await reconcile_loop(self.cfg, rt.archive, connect, out, self.pace, self.task_failed,
                             after=policy.after_reconcile)

    def _graph(self, tenant: TenantConfig) -> tuple[TokenProvider, RateLimiter | None]:
        """A tenant's Graph token provider and pacer, shared with its collection."""
        source = self.collector.sources.for_graph(tenant)
        return source.tokens, source.limiter

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
                await self.pace.sleep(delay)

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

    # ----------------------------------------------------------------- collection
    async def _stream_loop(self, tenant: TenantConfig, stream: str) -> None:
        while not self.stop.is_set():
            outcome = await self.collector.collect_stream(tenant, stream)
            await self._record(tenant, outcome)
            await self.pace.sleep(self.cfg.collection.poll_interval.total_seconds())

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
        h.stored += o.stored
        if o.error is None:
            # A pass that recorded a new gap still collected everything else: the stream is not
            # stalled, and the gap has its own alert below.
            h.last_success, h.last_error, h.last_error_kind, h.last_error_type = time.time(), None, None, None
            m.last_success.labels(*labels).set(h.last_success)
        else:
            h.last_error, h.last_error_kind, h.last_error_type = o.error, o.error_kind, o.error_type
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
    async def _store_probe(self, store: Store) -> None:
        while not self.stop.is_set():
            try:
                await store.check()
                self.health.store_ok, self.health.store_error = True, None
            except Exception as exc:  # noqa: BLE001 - any failure means "not writable"
                self.health.store_ok, self.health.store_error = False, str(exc)
                await self.alerter.send(Alert("store_failing", f"store_failing:{int(time.time() // 3600)}",
                                              "Archive store is failing", str(exc)))
            await self.pace.sleep(60)

    async def _stall_loop(self, archive: Archive) -> None:
        threshold = self.cfg.service.stall_threshold.total_seconds()
        while not self.stop.is_set():
            await self.pace.sleep(min(60.0, threshold / 4))
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
        hour = silence.settled_hour(stream, self.clock())
        if h.quiet_checked == hour:
            return  # this hour already reached its baseline; archive counts only grow
        if h.silent_checked is not None and h.silent_checked[:2] == (hour, h.stored) and \
                time.monotonic() - h.silent_checked[2] < silence.SILENT_RECHECK:
            return  # found silent, and nothing stored since: the same verdict (its alert went out then)
        verdict = await silence.check(archive, tenant.id, stream, hour, self.cfg.service.silence_ratio)
        if not verdict.silent:
            h.quiet_checked, h.silent_since, h.silent_checked = hour, None, None
            self.metrics.silent.labels(*labels).set(0)
            return
        h.silent_checked = (hour, h.stored, time.monotonic())
        self.metrics.silent.labels(*labels).set(1)
        h.silent_since = h.silent_since or hour
        # Identity: the episode (its first silent hour), so a silence lasting hours alerts once.
        await self.alerter.send(Alert(
            "stream_silent", f"stream_silent:{tenant.id}:{stream}:{h.silent_since:%Y-%m-%dT%H}", "Stream is silent",
            f"{stream} of tenant {tenant.label}: {verdict.describe()}. The shape of a silent upstream loss "
            "(as in September 2024); collection itself works.",
            fields={"tenant": tenant.label, "stream": stream, "hour": f"{hour:%Y-%m-%dT%H:00Z}",
                    "seen": verdict.seen, "expected": round(verdict.expected or 0)}))

    def _failing(self) -> Mapping[str, str]:
        """Alert channels whose last delivery failed, for /readyz (none before the alerter exists)."""
        alerter = getattr(self, "alerter", None)
        return alerter.failing if isinstance(alerter, Alerter) else {}


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
    kind, title = failure_kind(o.error_type)
    cursor = o.cursor.isoformat() if o.cursor else "start"
    return Alert(kind, f"{kind}:{o.tenant}:{o.stream}:{cursor}", title,
                 f"{o.stream} of tenant {tenant.label}: {o.error}",
                 fields={"tenant": tenant.label, "stream": o.stream, "error_kind": o.error_kind})
