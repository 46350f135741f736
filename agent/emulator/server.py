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
from pathlib import Path
from typing import Any

from aiohttp import web

from agent.emulator import blobs as blob_builder
from agent.emulator import dataset, scenario, siem_copy, siem_services, tls
from agent.emulator.clock import now_ticks
from agent.emulator.faults import FaultInjector
from agent.emulator.graph import GraphService
from agent.emulator.login import LoginService
from agent.emulator.management import ManagementService
from agent.emulator.quota import SlidingWindow
from agent.emulator.state import State
from agent.emulator.tokens import TokenIssuer

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


def build_state(opts: Options) -> State:
    """Everything before listening: scenario, key material, data, blobs."""
    origin = opts.origin if opts.origin is not None else now_ticks()
    scn = scenario.load(opts.scenario, origin)
    material = tls.make(opts.state_dir)
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
        runner = web.AppRunner(factory(state), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", ports.get(name, 0), ssl_context=ctx, shutdown_timeout=1.0)
        await site.start()
        port = runner.addresses[0][1]
        state.urls[name] = f"https://127.0.0.1:{port}"
        runners.append(runner)
    return runners


def stop_on_signal() -> asyncio.Event:
    """An event set by SIGTERM/SIGINT; installed before the first line so a caller may stop us at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
