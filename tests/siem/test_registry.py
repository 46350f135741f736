"""`agent.siem.registry`: the vendor `[siem] type` names builds that vendor's reader, writer and anchor,
and answers what the CLI used to ask by comparing vendor names (the query that finds missing ids)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.archive.anchors import Head
from agent.auth import TokenProvider, TokenProviders
from agent.errors import ConfigError
from agent.http import HttpClient
from agent.siem.elastic.anchor import ElasticAnchor
from agent.siem.elastic.reader import ElasticSiem
from agent.siem.elastic.writer import ElasticWriter
from agent.siem.registry import from_config, open_anchor, open_siem, open_writer, vendor
from agent.siem.sentinel.reader import SentinelSiem
from agent.siem.sentinel.writer import SentinelWriter
from agent.siem.splunk.anchor import SplunkAnchor
from agent.siem.splunk.reader import SplunkSiem
from agent.siem.splunk.writer import SplunkWriter
from agent.sources.base import Window
from tests.siem.fakes import TENANT, WORKSPACE, siem

GUID = "2f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"
WINDOW = Window(datetime(2026, 3, 10, 9, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC))


@pytest.fixture(autouse=True)
def _tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SIEM_TOKEN", "search-token")
    monkeypatch.setenv("FAKE_HEC_TOKEN", "hec-token")


def _agent(tmp_path: Path, siem_cfg: Any) -> config.Config:
    tenant = config.TenantConfig(id=TENANT, client_id="c", credential=config.Credential(secret=config.Secret("env:X")))
    return config.Config(tenants=(tenant,), store=config.LocalStoreConfig(path=tmp_path), siem=siem_cfg)


@pytest.mark.parametrize(("kind", "reader", "writer"), [("sentinel", SentinelSiem, SentinelWriter),
                                                        ("splunk", SplunkSiem, SplunkWriter),
                                                        ("elastic", ElasticSiem, ElasticWriter)])
async def test_the_vendor_builds_its_reader_and_writer(tmp_path: Path, kind: str, reader: type, writer: type) -> None:
    cfg = siem(kind)
    async with HttpClient(config.HttpConfig()) as http:
        tokens = TokenProviders(config.HttpConfig())
        assert isinstance(open_siem(cfg, _agent(tmp_path, cfg), http, tokens), reader)
        assert isinstance(open_writer(cfg, _agent(tmp_path, cfg), http, tokens), writer)


async def test_the_vendor_builds_its_anchor_with_its_default_index(tmp_path: Path) -> None:
    async with HttpClient(config.HttpConfig()) as http:
        tokens = TokenProviders(config.HttpConfig())
        splunk = open_anchor(_agent(tmp_path, siem("splunk")), http, tokens, "", Head)
        elastic = open_anchor(_agent(tmp_path, siem("elastic")), http, tokens, "heads", Head)
    assert isinstance(splunk, SplunkAnchor) and splunk.label == "siem:splunk:main"
    assert isinstance(elastic, ElasticAnchor) and elastic.label == "siem:elastic:heads"


async def test_sentinel_reads_as_a_configured_tenant(tmp_path: Path) -> None:
    cfg = siem("sentinel")
    bare = config.Config(tenants=(), store=config.LocalStoreConfig(path=tmp_path), siem=cfg)
    async with HttpClient(config.HttpConfig()) as http:
        with pytest.raises(ConfigError, match=r"needs a \[\[tenants\]\] entry"):
            open_siem(cfg, bare, http, TokenProviders(config.HttpConfig()))


def test_without_a_siem_table_reconcile_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='reconcile needs type = "sentinel", "splunk" or "elastic"'):
        from_config(_agent(tmp_path, None))
    with pytest.raises(ConfigError, match=r"siem\.type: 'qradar' is not one of"):
        vendor("qradar")


def test_each_vendor_names_where_missing_ids_live_and_how_to_look() -> None:
    sentinel = siem("sentinel")
    where, query = vendor("sentinel").missing_query(sentinel, sentinel.targets["o365.exchange"], TENANT, WINDOW,
                                                    [GUID])
    assert where == f"Log Analytics workspace {WORKSPACE}, table OfficeActivity"
    assert f'OfficeId in ("{GUID}")' in query and query.startswith("union isfuzzy=true OfficeActivity")
    splunk = siem("splunk", index="o365")
    where, query = vendor("splunk").missing_query(splunk, splunk.targets["o365.exchange"], TENANT, WINDOW, [GUID])
    assert where == "Splunk index o365, sourcetype o365:management:activity"
    assert query.endswith(f"earliest={int(WINDOW.start.timestamp())} latest={int(WINDOW.end.timestamp())}")
    elastic = siem("elastic")
    where, query = vendor("elastic").missing_query(elastic, elastic.targets["o365.exchange"], TENANT, WINDOW, [GUID])
    assert where == "Elasticsearch index logs-o365.audit-*"
    assert query.startswith("GET /logs-o365.audit-*/_search ") and f'"event.id":["{GUID}"]' in query


async def test_check_write_is_silent_without_write_keys(tmp_path: Path) -> None:
    async with HttpClient(config.HttpConfig()) as http:
        for kind, keys in (("sentinel", {"ingestion_endpoint": None}), ("splunk", {"hec_url": None}),
                           ("elastic", {})):
            cfg = siem(kind, **keys)
            tokens = TokenProviders(config.HttpConfig())
            assert await vendor(kind).check_write(cfg, _agent(tmp_path, cfg), http, tokens) == ""


async def test_sentinel_takes_every_token_from_the_providers_it_is_given(tmp_path: Path) -> None:
    """Reader, writer and anchor ask the one `tokens` for their audience (the runtime's, so msal's
    cache is shared); none builds a provider of its own."""
    cfg = siem("sentinel")
    agent_cfg = _agent(tmp_path, cfg)
    shared = TokenProviders(config.HttpConfig())
    asked: list[tuple[str, str]] = []

    def tokens(tenant: config.TenantConfig, resource: str) -> TokenProvider:
        asked.append((tenant.id, resource))
        return shared(tenant, resource)

    async with HttpClient(config.HttpConfig()) as http:
        reader = open_siem(cfg, agent_cfg, http, tokens)
        writer = open_writer(cfg, agent_cfg, http, tokens)
        anchor = open_anchor(agent_cfg, http, tokens, "Heads_CL", Head)
    query, ingest = (TENANT, cfg.vendor.resource or cfg.url), (TENANT, cfg.vendor.ingestion_resource)
    assert asked == [query, ingest, ingest, query]
    tenant = agent_cfg.tenants[0]
    assert reader._token.__self__ is shared(tenant, query[1])  # type: ignore[attr-defined]
    assert writer.token.__self__ is shared(tenant, ingest[1])  # type: ignore[attr-defined]
    assert anchor.ingest_tokens is shared(tenant, ingest[1])  # type: ignore[attr-defined]
