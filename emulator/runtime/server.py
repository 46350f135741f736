"""Start-up and listeners: one HTTPS listener per service on 127.0.0.1, so each base URL is a root
exactly like the real host and documented paths append unchanged.

Services are registered by name in `SERVICES` (name -> app factory); the SIEM emulators add theirs
the same way and get their own listener and first-line key.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRuleMatching, MatchedSubAppResource

from emulator.microsoft import blobs as blob_builder
from emulator.microsoft import clouds
from emulator.microsoft.graph import GraphService
from emulator.microsoft.login import LoginService
from emulator.microsoft.management import ManagementService
from emulator.microsoft.quota import SlidingWindow
from emulator.microsoft.tokens import TokenIssuer
from emulator.runtime import tls
from emulator.runtime.requestlog import RequestLog
from emulator.siems import siem_copy, siem_services
from emulator.world import dataset, scenario_parse
from emulator.world.clock import now_ticks
from emulator.world.faults import FaultInjector
from emulator.world.state import State

log = logging.getLogger(__name__)

AppFactory = Callable[[State], web.Application]
SERVICES: dict[str, AppFactory] = {
    "login": lambda s: LoginService(s).app(),
    "graph": lambda s: GraphService(s).app(),
    "management": lambda s: ManagementService(s).app(),
    "loganalytics": siem_services.loganalytics_app,
    "ingestion": siem_services.ingestion_app,
    "splunk": siem_services.splunk_app,
    "splunk_hec": siem_services.splunk_hec_app,
    "elastic": siem_services.elastic_app,
}

# Extra first-line keys a service contributes beyond its base URL (e.g. "workspace_id",
# "splunk_token", "elastic_api_key" from the SIEM emulators), keyed by service name.
FIRST_LINE_EXTRAS: dict[str, Callable[[State], dict[str, Any]]] = {"siem": siem_services.first_line}


@dataclass
class Options:
    scenario: Path
    state_dir: Path
    fault_log: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)  # service -> fixed port (0 = ephemeral)
    origin: int | None = None  # start instant override (ticks), for reproducible data
    impersonate: tuple[str, ...] = ()  # clouds whose Microsoft host names one listener answers for
    request_log: Path | None = None  # per-client request log (default STATE_DIR/requests.ndjson)


def build_state(opts: Options) -> State:
    """Everything before listening: scenario, key material, data, blobs."""
    origin = opts.origin if opts.origin is not None else now_ticks()
    scn = scenario_parse.load(opts.scenario, origin)
    material = tls.make(opts.state_dir, list(clouds.hosts(opts.impersonate)))
    # Hundreds of thousands of long-lived objects: collecting while building only rescans them
    # (it doubled start-up time), and freezing keeps later collections from walking them again.
    gc.disable()
    try:
        data = dataset.build(scn, origin)
        blobs = {
            (sd.tenant, sd.info.name): blob_builder.build(scn, sd, origin)
            for sd in data.all()
            if sd.info.api == "management"
        }
    finally:
        gc.freeze()
        gc.enable()
    faults = FaultInjector(scn.faults, scn.seed, opts.fault_log or opts.state_dir / "faults.ndjson")
    siem = siem_copy.from_dataset(data, scn.siem_plan, scn.seed, siem_services.workspace_id(scn.seed))
    return State(
        siem=siem,
        requests=RequestLog(opts.request_log or opts.state_dir / "requests.ndjson"),
        scenario=scn,
        origin=origin,
        dataset=data,
        blobs=blobs,
        material=material,
        tokens=TokenIssuer(),
        faults=faults,
        graph_quota=SlidingWindow(scn.quota.graph_requests_per_10s, 10),
        graph_app_quota=SlidingWindow(scn.quota.graph_app_requests_per_10s, 10),
        management_quota=SlidingWindow(scn.quota.management_requests_per_minute, 60),
    )


async def listen(state: State, ports: dict[str, int]) -> list[web.AppRunner]:
    """One TLS listener per registered service; fills `state.urls`."""
    ctx = state.material.server_context()
    runners = []
    for name, factory in SERVICES.items():
        app = factory(state)
        if state.requests is not None and name in clouds.SERVICE_NAMES:
            app.middlewares.insert(0, state.requests.middleware)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", ports.get(name, 0), ssl_context=ctx, shutdown_timeout=1.0)
        await site.start()
        port = runner.addresses[0][1]
        state.urls[name] = f"https://127.0.0.1:{port}"
        runners.append(runner)
    return runners


class _ServiceRule(AbstractRuleMatching):
    """Route to `service` by the Host header when it names a host we impersonate, else by path."""

    def __init__(self, service: str, hosts: dict[str, str]) -> None:
        self.service, self.hosts = service, hosts

    async def match(self, request: web.Request) -> bool:
        host = (request.host or "").lower()
        if not host.startswith("["):  # a bracketed IPv6 literal has colons of its own
            host = host.rsplit(":", 1)[0]
        return self.hosts.get(host, clouds.service_for_path(request.path)) == self.service

    def get_info(self) -> dict[str, Any]:  # type: ignore[override]
        return {"service": self.service}

    @property
    def canonical(self) -> str:
        return self.service


async def listen_impersonating(
    state: State, clouds_: tuple[str, ...], port: int | None, address: str = "127.0.0.1"
) -> list[web.AppRunner]:
    """One TLS listener answering for the Microsoft host names of `clouds_` (login, Graph and
    Management, routed by Host, else by path); other registered services keep their own listener.

    `port` None: 443, or an ephemeral port (with a warning) where 443 cannot be bound. Fills
    `state.urls` with the first cloud's host names and `state.aliases` with the others."""
    hosts = clouds.hosts(clouds_)
    front = web.Application(middlewares=[state.requests.middleware] if state.requests else [])
    for name in clouds.SERVICE_NAMES:
        sub = SERVICES[name](state)
        # Application.add_domain does this for an exact host; our rule also falls back to the path.
        front._add_subapp(partial(MatchedSubAppResource, _ServiceRule(name, hosts), sub), sub)
    runner = web.AppRunner(front, access_log=None, handle_signals=False)
    await runner.setup()
    ctx = state.material.server_context()
    try:
        site = web.TCPSite(runner, address, 443 if port is None else port, ssl_context=ctx, shutdown_timeout=1.0)
        await site.start()
    except OSError as exc:
        if port is not None:
            await runner.cleanup()
            raise OSError(exc.errno, f"cannot listen on {address}:{port}: {exc.strerror}") from None
        log.warning("Cannot listen on %s:443 (%s); using an ephemeral port instead.", address, exc.strerror)
        site = web.TCPSite(runner, address, 0, ssl_context=ctx, shutdown_timeout=1.0)
        await site.start()
    bound = runner.addresses[0][1]
    suffix = "" if bound == 443 else f":{bound}"
    state.urls.update({svc: f"https://{host}{suffix}" for svc, host in clouds.primary(clouds_).items()})
    for host, svc in hosts.items():
        url = f"https://{host}"
        if url != state.urls[svc].removesuffix(suffix):
            state.aliases[svc] = (*state.aliases.get(svc, ()), url)
    state.impersonated.update(hosts)
    runners = [runner]
    for name, factory in SERVICES.items():
        if name in clouds.SERVICE_NAMES:
            continue
        other = web.AppRunner(factory(state), access_log=None, handle_signals=False)
        await other.setup()
        await web.TCPSite(other, "127.0.0.1", 0, ssl_context=ctx, shutdown_timeout=1.0).start()
        state.urls[name] = f"https://127.0.0.1:{other.addresses[0][1]}"
        runners.append(other)
    return runners


def stop_on_signal() -> asyncio.Event:
    """An event set by SIGTERM/SIGINT; installed before the first line so a caller may stop us at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
