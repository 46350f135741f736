"""A stream that stops delivering: stalled (the API hangs) and silent (records stop coming).

- o365.exchange: the emulated Management API answers nothing for ~40 s ([[management.stall]]);
  the stall alert fires once, /readyz turns 503 naming the stream, and turns 200 again after.
  A second stall is open when SIGTERM arrives: in-flight requests are abandoned within the
  bound and the stream's cursor does not move.
- graph.signins.noninteractive: the scenario ends 3 h ago after 8 days of steady volume, so the
  last settled hour holds nothing while the same hour held ~100 records on each day before: the
  silence alert fires once (the shape of the September 2024 loss); it is not a readiness problem.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tests.emulator_fixture import running_emulator
from tests.service.harness import Agent, service_config, webhook_receiver
from tests.service.test_run import wait_for

TENANT = "7d9e2c41-8b3a-4f5e-a6d7-0e1f2a3b4c5d"
STALLED, SILENT = "o365.exchange", "graph.signins.noninteractive"
SCENARIO = f"""
seed = 5
start = "-8d"
end = "-3h"

[tenant]
id = "{TENANT}"
license = "p2"

[streams."{SILENT}"]
records = 20000   # ~100 per hour
[streams."{STALLED}"]
records = 300

[quota]
graph_requests_per_10s = 1000
management_requests_per_minute = 20000

[management]
content_delay = ["1s", "10s"]
straggler_fraction = 0.0

[[management.stall]]   # the Management API hangs: no answer within the agent's timeout
start = "+25s"
end = "+60s"
delay = "60s"

[[management.stall]]   # open again when SIGTERM arrives
start = "+80s"
end = "+10m"
delay = "60s"
"""
SERVICE: dict[str, object] = {"listen": "127.0.0.1:0", "stall_threshold": "15s", "notices": False,
                              "shutdown_timeout": "10s"}
COLLECTION: dict[str, object] = {"poll_interval": "3s", "initial_lookback": "9d", "window": "24h",
                                 "management_rescan": "0s", "max_attempts": 2}


@pytest.mark.slow
async def test_stalled_and_silent_streams(tmp_path: Path) -> None:
    cfg_path, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg_path), "--store-dir", str(store))
    cursor_file = store / "_meta" / "checkpoints" / f"tenant={TENANT}" / f"stream={STALLED}.json"
    with running_emulator(SCENARIO, tmp_path / "emu", extra_args=args) as emu:
        t0 = time.monotonic()  # ~ the emulator's start instant (stall windows are relative to it)
        async with webhook_receiver() as hook:
            service_config(cfg_path, hook.url, service=SERVICE, collection=COLLECTION, http_timeout="4s")
            agent = await Agent(cfg_path, tmp_path / "agent.log").start()
            try:
                async def readyz() -> tuple[int, dict[str, object]]:
                    status, body = await agent.get("/readyz")
                    return status, orjson.loads(body)

                # ---- before the stall: ready; the silent stream is alerted, and is no readiness problem
                await wait_for("the silence alert", lambda: _true(bool(hook.of("stream_silent"))), timeout=20)
                status, body = await readyz()
                # ready, unless a loaded machine let the stall window begin already (it is checked below)
                assert status == 200 or all(STALLED in str(p) for p in body["problems"]), body  # type: ignore[union-attr]
                assert time.monotonic() - t0 < 25, "the test machine is too slow for the stall schedule"

                # ---- the stall: alert once, unready, naming the stream
                await wait_for("the stall alert", lambda: _true(bool(hook.of("stream_stalled"))), timeout=45)
                status, body = await readyz()
                assert status == 503 and any(STALLED in str(p) for p in body["problems"]), body  # type: ignore[union-attr]
                m = await agent.metrics()
                assert m.get("agent_stream_stalled", tenant=TENANT, stream=STALLED) == 1
                assert m.get("agent_stream_stalled", tenant=TENANT, stream=SILENT) == 0
                assert m.get("agent_stream_silent", tenant=TENANT, stream=SILENT) == 1
                assert (m.get("agent_windows_failed_total", tenant=TENANT, stream=STALLED) or 0) >= 1

                # ---- recovery: ready again once a pass succeeds
                async def ready_again() -> bool:
                    return (await readyz())[0] == 200

                await wait_for("readiness after the stall", ready_again, timeout=60)
                assert time.monotonic() - t0 < 80, "recovered too late to test SIGTERM during the second stall"
                stalled_alerts = hook.of("stream_stalled")

                # ---- SIGTERM while requests hang in the second stall
                await asyncio.sleep(max(0.0, 86 - (time.monotonic() - t0)))
                checkpoint = cursor_file.read_bytes()
                hanging = [f for f in emu.faults() if f["fault"] == "stall"]
            finally:
                code, seconds = await agent.terminate()
            print(f"SIGTERM during a stall -> exit {code} in {seconds:.2f} s")
            assert code == 0 and seconds < 10 + 5  # shutdown_timeout + closing
            assert len(hanging) > 0
            assert cursor_file.read_bytes() == checkpoint, "cursor moved"

        # each condition alerted once: one stall episode, one silence episode
        assert len(stalled_alerts) == 1 and stalled_alerts[0]["fields"]["stream"] == STALLED
        assert all(a["fields"]["stream"] == STALLED for a in hook.of("stream_stalled"))
        [silent] = hook.of("stream_silent")
        assert silent["fields"]["stream"] == SILENT
        assert not hook.of("stream_silent")[1:]


async def _true(value: bool) -> bool:
    return value
