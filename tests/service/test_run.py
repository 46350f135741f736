"""`agent run` end to end against the emulator (Graph, Management Activity API, Sentinel with a gap).

One run of a couple of minutes proves the service as a whole: the archive equals the emulator's
truth, the metrics count what happened, the SIEM gap and the relevant service notices each reach a
local webhook exactly once (the irrelevant notices never), systemd hears READY/WATCHDOG/STOPPING,
SIGTERM ends it within the bound, and a restart resumes without loss, duplicates or repeated alerts.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tests.e2e.helpers import parse_rfc3339
from tests.emulator_fixture import REPO, running_emulator
from tests.service.harness import (
    Agent,
    NotifySocket,
    archive_ids,
    archive_records,
    service_config,
    truth_ids,
    webhook_receiver,
)

TENANT = "3f1c2b7e-5a4d-4e8f-9b0a-1c2d3e4f5a6b"
STREAMS = ("graph.signins.interactive", "graph.directory_audits", "o365.exchange")
SCENARIO = f"""
seed = 11
start = "-2h"
end = "+60s"   # records keep arriving during the first minute of the run

[tenant]
id = "{TENANT}"
license = "p2"

[streams."graph.signins.interactive"]
records = 600
[streams."graph.directory_audits"]
records = 150
[streams."o365.exchange"]
records = 300

[faults]
throttle = 0.05  # both APIs: the throttle metrics must count exactly what the emulator injected

[quota]
graph_requests_per_10s = 100
management_requests_per_minute = 20000

[management]
content_delay = ["1s", "15s"]
straggler_fraction = 0.0
blob_records = 20

[graph]
issues = 6
messages = 6

[[siem.gaps]]   # the SIEM lost an hour of sign-ins
stream = "graph.signins.interactive"
start = "-100m"
end = "-70m"
"""
SERVICE: dict[str, object] = {"listen": "127.0.0.1:0", "stall_threshold": "90s", "reconcile_interval": "10s",
           "reconcile_lookback": "6h", "notices_interval": "5s", "shutdown_timeout": "20s"}
COLLECTION: dict[str, object] = {"poll_interval": "5s", "initial_lookback": "6h", "window": "2h",
                                 "management_rescan": "10m"}
SIGTERM_BOUND = 30.0  # systemd/ms-log-agent.service: TimeoutStopSec=45s assumes exit within 30 s


def entra(notice: dict[str, object]) -> bool:
    """The emulator's only logging-related service: these notices must be forwarded, no others."""
    services = [notice.get("service"), *(notice.get("services") or [])]  # type: ignore[misc]
    return "Microsoft Entra" in services


def reconcile_counts(truth: list[dict[str, object]], ids: set[str], first: float, last: float) -> set[int]:
    """What a scheduled reconcile run between `first` and `last` (epoch seconds) checks of `ids`: the
    records before the last whole hour before the run (the lookback reaches back past them all)."""
    events = [parse_rfc3339(str(r["event_time"])).timestamp() for r in truth if r["id"] in ids]
    hours = range(int(first // 3600) * 3600, int(last // 3600) * 3600 + 1, 3600)
    return {sum(1 for t in events if t < end) for end in hours}


async def wait_for(what: str, check: object, timeout: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


@pytest.mark.slow
async def test_agent_run_end_to_end(tmp_path: Path) -> None:
    cfg_path, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg_path), "--store-dir", str(store), "--siem", "sentinel")
    with running_emulator(SCENARIO, tmp_path / "emu", extra_args=args) as emu:
        truth = emu.truth()
        want = {s: truth_ids(truth, TENANT, s) for s in STREAMS}
        lost_in_siem = {r["id"] for r in truth if r["stream"] == STREAMS[0] and not r["in_siem"]}
        assert all(want.values()) and lost_in_siem
        began = time.time()
        started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(began))
        async with webhook_receiver() as hook:
            service_config(cfg_path, hook.url, service=SERVICE, collection=COLLECTION)
            notify = NotifySocket(tmp_path / "notify.sock")
            env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
            reader = asyncio.create_task(notify.drain_forever())
            agent = await Agent(cfg_path, tmp_path / "agent1.log", env=env).start()
            try:
                # ---- collection: every record the emulator serves, counted by the metrics
                async def complete() -> bool:
                    m = await agent.metrics()
                    return all(m.get("agent_records_stored_total", tenant=TENANT, stream=s) == len(want[s])
                               for s in STREAMS)

                await wait_for("the archive to hold the truth", complete, timeout=150, every=2)
                live = [r for r in truth if r["visible_at"] > started]
                assert len(live) >= 3, "some records became visible only while the service ran"

                # ---- alerts: the SIEM gap and the relevant notices
                async def alerted() -> bool:
                    return bool(hook.of("siem_gap")) and bool(hook.of("service_notice"))

                await wait_for("the gap alert and the notices", alerted, timeout=60)
                await asyncio.sleep(12)  # more reconcile runs and notice polls: nothing may repeat
                scraping = time.time()
                metrics = await agent.metrics()
                scraped = time.time()
                status, ready = await agent.get("/readyz")
                assert status == 200 and orjson.loads(ready)["ready"], ready
                assert (await agent.get("/healthz"))[0] == 200
            finally:
                code, seconds = await agent.terminate()
                reader.cancel()
            notify.drain()
            print(f"SIGTERM -> exit {code} in {seconds:.2f} s")
            assert code == 0 and seconds < SIGTERM_BOUND

            # ---- metrics: every agent_* series a running service exposes is in the reference
            reference = (REPO / "docs" / "metrics.md").read_text()
            exposed = {name for name, _ in metrics.samples
                       if name.startswith("agent_") and not name.endswith("_created")}
            assert exposed and not [n for n in exposed if f"`{n}`" not in reference]
            for s in STREAMS:
                labels = {"tenant": TENANT, "stream": s}
                assert metrics.get("agent_records_stored_total", **labels) == len(want[s])
                assert (metrics.get("agent_bytes_stored_total", **labels) or 0) > 0
                assert metrics.get("agent_ledger_gaps", **labels) == 0
                assert metrics.get("agent_stream_stalled", **labels) == 0
                assert (metrics.get("agent_last_success_timestamp_seconds", **labels) or 0) > scraped - 60
                assert 0 <= (metrics.get("agent_cursor_lag_seconds", **labels) or -1) < 60
                assert metrics.get("agent_stream_passes_total", result="failed", **labels) is None
                assert metrics.get("agent_reconcile_missing_in_agent", **labels) == 0
            sig = {"tenant": TENANT, "stream": STREAMS[0]}
            assert metrics.get("agent_reconcile_missing_in_siem", **sig) == len(lost_in_siem)
            coverage = metrics.get("agent_reconcile_coverage_ratio", **sig)
            checked = metrics.get("agent_reconcile_checked", **sig) or 0
            # the scheduled window ends at the last whole bucket (hour) before the run: every run was
            # between `began` and the scrape, so it ended at one of the hours those instants floor to
            assert checked in reconcile_counts(truth, want[STREAMS[0]], began, scraped), checked
            assert coverage == pytest.approx(1 - len(lost_in_siem) / checked)
            for s in STREAMS[1:]:
                assert metrics.get("agent_reconcile_missing_in_siem", tenant=TENANT, stream=s) == 0
                assert metrics.get("agent_reconcile_coverage_ratio", tenant=TENANT, stream=s) == 1.0
            faults = emu.faults()
            for api in ("graph", "management"):
                assert metrics.sum("agent_api_requests_total", tenant=TENANT, api=api, code="200") > 10
                # the service keeps collecting until SIGTERM: count what was injected while the metrics
                # were read (a throttle between the scrape and the stop is in the log, not in them)
                injected = [parse_rfc3339(f["time"]).timestamp() for f in faults
                            if f["api"] == api and f["fault"] == "throttle"]
                counted = metrics.get("agent_api_throttled_total", tenant=TENANT, api=api) or 0
                assert sum(t < scraping for t in injected) <= counted <= sum(t <= scraped for t in injected), api
                assert counted > 0, api
            assert (metrics.get("process_resident_memory_bytes") or 0) > 10e6
            assert (metrics.get("process_cpu_seconds_total") or 0) > 0

            # ---- alerts: the gap exactly once, each relevant notice once, nothing else
            notices = await archive_records(store, TENANT, "graph.service_announcements")
            assert len({n["id"] for n in notices}) == 12, "every issue and message is archived"
            relevant = {str(n["id"]) for n in notices if entra(n)}
            assert relevant and len(relevant) < 12, "the scenario needs relevant and irrelevant notices"
            forwarded = [a["fields"]["id"] for a in hook.of("service_notice")]
            assert sorted(forwarded) == sorted(relevant)
            assert all(a["link"] and a["fields"]["id"] in a["link"] for a in hook.of("service_notice"))
            [gap] = hook.of("siem_gap")
            assert gap["fields"]["stream"] == STREAMS[0] and gap["fields"]["missing"] == len(lost_in_siem)
            assert set(hook.kinds()) == {"siem_gap", "service_notice"}, hook.kinds()
            assert metrics.get("agent_alerts_sent_total", kind="siem_gap") == 1

            # ---- systemd
            msgs = notify.messages
            assert msgs[0] == "READY=1" and msgs[-1] == "STOPPING=1" and "WATCHDOG=1" in msgs, msgs

            # ---- the archive equals the truth, each record once
            for s in STREAMS:
                ids = await archive_ids(store, TENANT, s)
                assert set(ids) == want[s], s
                assert max(ids.values()) == 1, s

            # ---- restart: resumes from the cursors; nothing lost, duplicated or alerted again
            before = len(hook.got)
            agent2 = Agent(cfg_path, tmp_path / "agent2.log")
            await agent2.start()
            try:
                async def passed_again() -> bool:
                    done = {r.get("stream") for r in agent2.lines() if r.get("msg") == "Stream pass complete."}
                    rec = [r for r in agent2.lines() if r.get("msg") == "Scheduled reconcile done."]
                    return done >= set(STREAMS) and bool(rec)

                await wait_for("a pass and a reconcile after the restart", passed_again, timeout=60)
                await asyncio.sleep(6)  # one more notice poll
                m2 = await agent2.metrics()
            finally:
                code2, seconds2 = await agent2.terminate()
            assert code2 == 0 and seconds2 < SIGTERM_BOUND
            for s in STREAMS:
                assert m2.get("agent_records_stored_total", tenant=TENANT, stream=s) == 0, s
                ids = await archive_ids(store, TENANT, s)
                assert set(ids) == want[s] and max(ids.values()) == 1, s
            assert m2.get("agent_reconcile_missing_in_siem", tenant=TENANT, stream=STREAMS[0]) == len(lost_in_siem)
            assert len(hook.got) == before, hook.got[before:]
            notify.close()
