"""In-process service tests: no emulator, collection replaced where a test needs a fault."""

from __future__ import annotations

import asyncio
import builtins
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from agent.collect import Collector, StreamOutcome
from agent.config import (
    AlertsConfig,
    Config,
    Credential,
    HttpConfig,
    LocalStoreConfig,
    ServiceConfig,
    TenantConfig,
)
from agent.http import HttpClient
from agent.service.alerts import Alert, Alerter
from agent.service.metrics import Metrics, ProcessCollector
from agent.service.supervisor import Service
from agent.service.systemd import sd_notify
from agent.store.local import LocalStore
from tests.service.harness import Metrics as Scraped
from tests.service.harness import until

STREAMS = ("graph.signins.interactive", "graph.directory_audits", "o365.exchange")


def _cfg(tmp_path: Path, **service: Any) -> Config:
    tenants = tuple(TenantConfig(id=f"00000000-0000-0000-0000-00000000000{i}", client_id="c",
                                 credential=Credential(), streams=STREAMS) for i in range(2))
    svc = ServiceConfig(listen="127.0.0.1:0", notices=False, **service)
    return Config(tenants=tenants, store=LocalStoreConfig(path=tmp_path / "store"), service=svc)


async def test_a_crashed_stream_task_restarts_without_taking_the_others_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from agent.config import CollectionConfig

    calls: dict[tuple[str, str], int] = {}
    victim = ("00000000-0000-0000-0000-000000000001", "graph.directory_audits")

    async def fake_collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        key = (tenant.id, stream)
        calls[key] = calls.get(key, 0) + 1
        if key == victim and calls[key] <= 3:
            raise RuntimeError("injected bug")  # not an AgentError: the task itself crashes
        return StreamOutcome(tenant.id, stream, windows=1, fetched=2, stored=2)

    monkeypatch.setattr(Collector, "collect_stream", fake_collect)
    cfg = _cfg(tmp_path, restart_backoff_max=timedelta(seconds=0.3))
    cfg = Config(**{**cfg.__dict__, "collection": CollectionConfig(poll_interval=timedelta(seconds=0.1))})
    svc = Service(cfg)
    runner = asyncio.create_task(svc.run())
    await until(lambda: runner.done() or (calls.get(victim, 0) >= 5 and len(calls) == 6 and
                                          all(n >= 10 for k, n in calls.items() if k != victim)),
                "ten passes of every stream and five of the restarted one")
    svc.stop.set()
    assert await asyncio.wait_for(runner, 10) == 0
    others = [k for k in calls if k != victim]
    assert len(others) == 5 and all(calls[k] >= 10 for k in others), calls  # never interrupted
    assert calls[victim] >= 5, "the crashed task was restarted and went on collecting"
    m = Scraped.parse(svc.metrics.render().decode())
    assert m.get("agent_task_restarts_total", task=f"{victim[0]}/{victim[1]}") == 3
    assert m.get("agent_records_stored_total", tenant=victim[0], stream=victim[1]) == 2 * (calls[victim] - 3)


async def test_sigterm_stops_the_service_within_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that does not react to cancellation quickly still cannot hold the process past the bound."""
    from datetime import timedelta

    collecting = asyncio.Event()

    async def slow_collect(self: Collector, tenant: TenantConfig, stream: str, *a: object) -> StreamOutcome:
        collecting.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # e.g. a segment being finished
            raise
        return StreamOutcome(tenant.id, stream)

    monkeypatch.setattr(Collector, "collect_stream", slow_collect)
    svc = Service(_cfg(tmp_path, shutdown_timeout=timedelta(seconds=2)))
    runner = asyncio.create_task(svc.run())
    await asyncio.wait_for(collecting.wait(), 30)  # a pass is under way: SIGTERM must interrupt it
    began = time.monotonic()
    import os
    import signal
    os.kill(os.getpid(), signal.SIGTERM)  # the service's own handler
    assert await asyncio.wait_for(runner, 10) == 0
    assert 0.4 < time.monotonic() - began < 3


def test_sd_notify_never_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "n.sock"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    began = time.monotonic()
    results = [sd_notify("WATCHDOG=1") for _ in range(500)]  # nobody reads: the queue fills up
    assert time.monotonic() - began < 2
    assert results[0] and not all(results)
    reader.close()
    assert not sd_notify("WATCHDOG=1")  # socket gone: False, no exception
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_process_metrics_read_only_proc_self(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ProcSubset=pid, /proc/stat and the other system files are hidden."""
    real_open = builtins.open

    def guarded(file: Any, *a: Any, **k: Any) -> Any:
        if str(file).startswith("/proc/") and not str(file).startswith("/proc/self/"):
            raise PermissionError(file)
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", guarded)
    values = {s.name: s.value for m in ProcessCollector().collect() for s in m.samples}
    assert values["process_resident_memory_bytes"] > 1e6
    assert values["process_cpu_seconds_total"] > 0
    assert values["process_open_fds"] > 0
    assert abs(values["process_start_time_seconds"] - time.time()) < 24 * 3600
    assert "process_resident_memory_bytes" in Metrics().render().decode()


async def test_siem_gap_alert_is_not_repeated_when_the_window_slides(tmp_path: Path) -> None:
    """A gap clipped by the sliding reconcile window changes its bounds, not its hours."""
    async with HttpClient(HttpConfig()) as http:
        alerter = Alerter(AlertsConfig(), http, LocalStore(tmp_path))
        h = 3600 * 10**6
        first = Alert("siem_gap", "siem_gap:t:s:0:3", "t", "x")
        assert await alerter.send(first, covers=[f"siem_gap:t:s:{b}" for b in range(0, 3 * h, h)]) is False
        # no webhooks: nothing delivered, but remembered; the clipped gap [1h, 3h) is not new
        assert await alerter.send(Alert("siem_gap", "siem_gap:t:s:1:3", "t", "x"),
                                  covers=[f"siem_gap:t:s:{b}" for b in range(h, 3 * h, h)]) is False
        assert "siem_gap:t:s:1:3" not in (await alerter._load())
        # the gap grew by an hour: that is news
        grown = Alert("siem_gap", "siem_gap:t:s:1:4", "t", "x")
        await alerter.send(grown, covers=[f"siem_gap:t:s:{b}" for b in range(h, 4 * h, h)])
        assert "siem_gap:t:s:1:4" in (await alerter._load())


async def test_sharded_agents_keep_separate_alert_memories(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    async with HttpClient(HttpConfig()) as http:
        a, b = (Alerter(AlertsConfig(), http, store, shard=(i, 2)) for i in range(2))
        await a.send(Alert("k", "from-a", "t", "x"))
        await b.send(Alert("k", "from-b", "t", "x"))
        await a.send(Alert("k", "from-a-2", "t", "x"))  # must not erase b's memory
        merged = await Alerter(AlertsConfig(), http, store)._load()  # e.g. after going back to one agent
    assert {"from-a", "from-b", "from-a-2"} <= set(merged)


HANGING_AGENT = """
import asyncio, sys, time
from agent.collect import Collector

async def hang(self, tenant, stream, *a):
    open(sys.argv[2], "w").close()  # the test signals only once a thread hangs
    await asyncio.to_thread(time.sleep, 120)  # e.g. an S3 put stuck in boto3's thread pool

Collector.collect_stream = hang
from agent.cli.main import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


async def test_sigterm_bound_holds_even_when_a_thread_hangs(tmp_path: Path) -> None:
    """`agent run` exits within shutdown_timeout + margin although a worker thread never returns."""
    import os
    import signal
    import sys

    from tests.service.harness import REPO, Agent

    (tmp_path / "secret").write_text("s")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
[[tenants]]
id = "00000000-0000-0000-0000-000000000001"
client_id = "00000000-0000-0000-0000-000000000002"
client_secret_file = "secret"
streams = ["graph.directory_audits"]
[store]
type = "local"
path = "{tmp_path / 'store'}"
[service]
listen = "127.0.0.1:0"
shutdown_timeout = "1s"
notices = false
[log]
format = "json"
""")
    agent = Agent(cfg, tmp_path / "agent.log")
    script, hanging = tmp_path / "hang.py", tmp_path / "hanging"
    script.write_text(HANGING_AGENT)
    with open(agent.log, "ab") as out:
        agent.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(cfg), str(hanging), stdout=out, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    await agent.wait_log("Service started.", 30)
    await until(hanging.exists, "a collection thread to hang", timeout=60)
    code, seconds = await agent.terminate(signal.SIGTERM, timeout=60)
    assert code == 1 and 1 + 4 < seconds < 1 + 5 + 2, (code, seconds)
    assert any(r.get("msg", "").startswith("Shutdown exceeded its bound") for r in agent.lines())


async def test_a_licence_answer_is_alerted_as_a_delay_keyed_by_tenant_and_hour(tmp_path: Path) -> None:
    """Premium tenants get the licence 403 intermittently (microsoft-graph-docs#14120): the service
    alerts it as a warning that costs a delay, once per tenant and hour, not as a lost licence."""
    from agent.http import Response

    svc = Service(_cfg(tmp_path))
    sent: list[Alert] = []

    class Recorder:
        async def send(self, alert: Alert) -> bool:
            sent.append(alert)
            return True

    svc.alerter = Recorder()  # type: ignore[assignment]
    body = b'{"error":{"code":"Authentication_RequestFromNonPremiumTenantOrB2CTenant","message":"x"}}'
    tenant = "00000000-0000-0000-0000-000000000001"
    svc._observe((tenant, "graph"), Response(403, {}, body, "https://graph/beta/auditLogs/signIns"))
    svc._observe((tenant, "graph"), Response(200, {}, b'{"value":[]}', "https://graph/beta/auditLogs/signIns"))
    await asyncio.sleep(0.05)
    assert [a.kind for a in sent] == ["licence_refused"] and sent[0].severity == "warning"
    assert "retries" in sent[0].text and tenant in sent[0].key
