"""`agent run` with Defender alerts: collected like the logs, and a SIEM gap in them alerted first.

The SIEM lost an hour of sign-ins and an hour of Defender alerts; the service must collect every
alert version, and its webhook must get the Defender gap before the sign-in gap, marked high priority.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.emulator_fixture import running_emulator
from tests.service.harness import Agent, archive_ids, service_config, truth_ids, webhook_receiver

TENANT = "3f1c2b7e-5a4d-4e8f-9b0a-1c2d3e4f5a6b"
STREAMS = ("graph.signins.interactive", "graph.security_alerts")
SCENARIO = f"""
seed = 12
start = "-3h"
end = "-5m"
[tenant]
id = "{TENANT}"
license = "p2"
[streams."graph.signins.interactive"]
records = 200
[streams."graph.security_alerts"]
records = 40
[quota]
graph_requests_per_10s = 100
[[siem.gaps]]
stream = "graph.signins.interactive"
start = "-150m"
end = "-90m"
[[siem.gaps]]
stream = "graph.security_alerts"
start = "-150m"
end = "-90m"
"""
SERVICE: dict[str, object] = {"listen": "127.0.0.1:0", "stall_threshold": "90s", "reconcile_interval": "10s",
                              "reconcile_lookback": "6h", "notices_interval": "1h", "shutdown_timeout": "20s"}
COLLECTION: dict[str, object] = {"poll_interval": "5s", "initial_lookback": "4h", "window": "4h"}


async def test_agent_run_collects_defender_alerts_and_alerts_their_gap_first(tmp_path: Path) -> None:
    cfg_path, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg_path), "--store-dir", str(store), "--siem", "sentinel")
    with running_emulator(SCENARIO, tmp_path / "emu", extra_args=args) as emu:
        truth = emu.truth()
        want = {s: truth_ids(truth, TENANT, s) for s in STREAMS}
        async with webhook_receiver() as hook:
            service_config(cfg_path, hook.url, service=SERVICE, collection=COLLECTION)
            agent = await Agent(cfg_path, tmp_path / "agent.log").start()
            try:
                deadline = time.monotonic() + 60
                while len(hook.of("siem_gap")) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(1)
            finally:
                code, _seconds = await agent.terminate()
            assert code == 0
            gaps = hook.of("siem_gap")
            assert [g["fields"]["stream"] for g in gaps] == ["graph.security_alerts", "graph.signins.interactive"]
            assert gaps[0]["fields"]["priority"] == "high" and gaps[1]["fields"]["priority"] == "normal"
            assert gaps[0]["title"] == "The SIEM is missing Defender alerts"
            for s in STREAMS:
                ids = await archive_ids(store, TENANT, s)
                assert set(ids) == want[s] and max(ids.values()) == 1, s
