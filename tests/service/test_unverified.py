"""`agent run` against a SIEM it cannot read (a wrong Sentinel workspace id).

Collection works; every scheduled reconcile fails to check the window. That must never read as
"missing 0": one `siem_unverified` alert for the episode (not one per run), the metric
`agent_reconcile_unverified` at 1 for every stream, no complete reconcile time, and `/readyz`
naming the problem.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.emulator_fixture import running_emulator
from tests.service.harness import Agent, service_config, webhook_receiver
from tests.service.test_run import wait_for

TENANT = "4a3b2c1d-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
STREAMS = ("graph.signins.interactive", "graph.directory_audits")
SCENARIO = f"""
seed = 3
start = "-3h"
end = "-1h"

[tenant]
id = "{TENANT}"
license = "p2"

[streams."graph.signins.interactive"]
records = 200
[streams."graph.directory_audits"]
records = 50

[quota]
graph_requests_per_10s = 1000
"""
SERVICE: dict[str, object] = {"listen": "127.0.0.1:0", "stall_threshold": "120s", "reconcile_interval": "2s",
                              "reconcile_lookback": "4h", "notices": False, "shutdown_timeout": "10s"}
COLLECTION: dict[str, object] = {"poll_interval": "5s", "initial_lookback": "4h", "window": "4h"}
WRONG_WORKSPACE = "0badc0de-0000-4000-8000-000000000000"


async def test_an_unreadable_siem_alerts_once_and_is_not_ready(tmp_path: Path) -> None:
    cfg_path, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg_path), "--store-dir", str(store), "--siem", "sentinel")
    with running_emulator(SCENARIO, tmp_path / "emu", extra_args=args):
        async with webhook_receiver() as hook:
            service_config(cfg_path, hook.url, service=SERVICE, collection=COLLECTION)
            text = cfg_path.read_text()
            lines = [ln for ln in text.split("\n") if not ln.startswith(("workspace_id = ", "max_attempts = "))]
            cfg_path.write_text("\n".join(lines).replace(
                "[siem]\n", f'[siem]\nworkspace_id = "{WRONG_WORKSPACE}"\nmax_attempts = 1\n', 1))
            agent = await Agent(cfg_path, tmp_path / "agent.log").start()
            try:
                async def alerted() -> bool:
                    return bool(hook.of("siem_unverified"))

                await wait_for("the siem_unverified alert", alerted, timeout=60)
                runs = lambda: [r for r in agent.lines() if r.get("msg") == "Scheduled reconcile done."]  # noqa: E731
                first = len(runs())

                async def more_runs() -> bool:
                    return len(runs()) >= first + 3

                await wait_for("three more reconcile runs", more_runs, timeout=60)
                m = await agent.metrics()
                status, body = await agent.get("/readyz")
            finally:
                code, _ = await agent.terminate()
            assert code == 0

    [alert] = hook.of("siem_unverified")  # once for the episode, not once per run
    assert "WorkspaceNotFound" in alert["text"] and alert["fields"]["streams"] == len(STREAMS)
    assert not hook.of("siem_gap")
    done = runs()
    assert all(r["unverified"] == len(STREAMS) and r["missing"] == 0 and r["level"] == "warning" for r in done)
    for s in STREAMS:
        assert m.get("agent_reconcile_unverified", tenant=TENANT, stream=s) == 1
        assert m.get("agent_reconcile_last_complete_timestamp_seconds", tenant=TENANT, stream=s) == 0
        assert (m.get("agent_reconcile_checked", tenant=TENANT, stream=s) or 0) > 0  # the archive's real count
    ready = orjson.loads(body)
    assert status == 503 and not ready["ready"]
    assert any(p.startswith("siem: could not verify since") and "WorkspaceNotFound" in p for p in ready["problems"])
