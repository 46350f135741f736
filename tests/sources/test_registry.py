"""`agent.sources.registry`: one source per tenant and kind, built with what its quota says it shares."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agent import config
from agent.archive.archive import Archive
from agent.auth import TokenProviders
from agent.checkpoint import StoreState
from agent.collect import ArchiveHeld
from agent.errors import AgentError
from agent.http import HttpClient
from agent.sources.deep_history.source import WithDeepHistory
from agent.sources.graph.security import SecuritySource
from agent.sources.graph.source import GraphSource
from agent.sources.management_activity.source import ManagementActivitySource
from agent.sources.registry import BUILDERS, Keeping, Sources
from agent.store.local import LocalStore
from agent.streams import STREAMS

APP = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"


def _tenant(tenant_id: str) -> config.TenantConfig:
    return config.TenantConfig(id=tenant_id, client_id=APP, credential=config.Credential(secret=config.Secret("env:X")))


def _sources(tmp_path: Path, http: HttpClient, *tenants: config.TenantConfig, deep_history: bool = False) -> Sources:
    cfg = config.Config(tenants=tenants, store=config.LocalStoreConfig(path=tmp_path))
    cfg = replace(cfg, collection=replace(cfg.collection, deep_history=deep_history))
    archive = Archive(LocalStore(tmp_path))
    keeping = Keeping(ledger=lambda t: StoreState(archive.store, "ledger", t),
                      provenance=lambda t: StoreState(archive.store, "provenance", t),
                      held=lambda t: ArchiveHeld(archive, t))
    return Sources(cfg, http, TokenProviders(cfg.http), keeping)


def test_every_collected_stream_kind_has_a_builder() -> None:
    kinds = {s.source for s in STREAMS.values()} - {"service_notices"}  # notices: the service's bridge, not a source
    assert kinds == set(BUILDERS)


async def test_one_source_per_tenant_and_kind_sharing_graphs_token_and_the_apps_pacer(tmp_path: Path) -> None:
    a, b = _tenant("11111111-1111-4111-8111-111111111111"), _tenant("22222222-2222-4222-8222-222222222222")
    async with HttpClient(config.HttpConfig()) as http:
        sources = _sources(tmp_path, http, a, b)
        signins = sources.for_stream(a, "graph.signins.interactive")
        assert isinstance(signins, GraphSource)
        assert sources.for_stream(a, "graph.directory_audits") is signins  # one pacer for the tenant's Graph quota
        assert sources.for_graph(a) is signins
        other = sources.for_stream(b, "graph.signins.interactive")
        assert other is not signins and other.limiter.within is signins.limiter.within  # one app, one app pacer
        alerts = sources.for_stream(a, "graph.security_alerts")
        assert isinstance(alerts, SecuritySource) and alerts.tokens is signins.tokens
        assert alerts.limiter is not signins.limiter  # Defender's own quota
        management = sources.for_stream(a, "o365.exchange")
        assert isinstance(management, ManagementActivitySource)
        assert management.client.tokens is not signins.tokens  # the Management API is another audience
        with pytest.raises(AgentError, match="no source for service_notices"):
            sources.for_stream(a, "graph.service_announcements")


async def test_deep_history_stands_behind_the_management_api_when_enabled(tmp_path: Path) -> None:
    a = _tenant("11111111-1111-4111-8111-111111111111")
    async with HttpClient(config.HttpConfig()) as http:
        source = _sources(tmp_path, http, a, deep_history=True).for_stream(a, "o365.exchange")
    assert isinstance(source, WithDeepHistory)
