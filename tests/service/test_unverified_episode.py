"""The "could not verify" episode of `agent run`, in process: alerted once while it lasts, cleared
by the next complete reconcile, alerted again when the SIEM fails again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.config import AlertsConfig, Config, Credential, HttpConfig, LocalStoreConfig, ServiceConfig, TenantConfig
from agent.http import HttpClient
from agent.reconcile.schedule import Findings, note_verification
from agent.service.alerts import Alerter
from agent.service.supervisor import Service
from agent.siem import config as siem_config
from agent.store.local import LocalStore

TENANT = "00000000-0000-0000-0000-000000000001"


async def test_one_alert_per_episode_and_readiness_follows(tmp_path: Path) -> None:
    cfg = Config(tenants=(TenantConfig(id=TENANT, client_id="c", credential=Credential(),
                                       streams=("graph.signins.interactive",)),),
                 store=LocalStoreConfig(path=tmp_path / "store"),
                 service=ServiceConfig(listen="127.0.0.1:0", notices=False),
                 siem=siem_config.parse({"type": "sentinel", "workspace_id": "7c759f10-1111-4222-8333-944455566677"}))
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    service = Service(cfg, clock=lambda: now[0])
    stream = [(TENANT, "graph.signins.interactive", 120)]
    async with HttpClient(HttpConfig()) as http:
        service.alerter = Alerter(AlertsConfig(), http, LocalStore(tmp_path / "store"))
        out = Findings(service.alerter.store, service.metrics, service.health, service.alerter, service.clock)

        async def sent() -> list[str]:
            return sorted(k for k in await service.alerter._load() if k.startswith("siem_unverified:"))

        for _ in range(3):  # three failing runs: one episode
            await note_verification(out, ["the SIEM could not answer: 403 Forbidden"], stream)
            now[0] += timedelta(hours=1)
        assert len(await sent()) == 1
        [problem] = service.health.problems(3600)
        assert problem == "siem: could not verify since 2026-03-01T00:00:00Z: the SIEM could not answer: 403 Forbidden"

        await note_verification(out, [], [])  # a complete run ends the episode
        assert service.health.problems(3600) == []

        await note_verification(out, ["timed out"], stream)  # a new episode is news again
        assert len(await sent()) == 2
