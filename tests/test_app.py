"""The composition root: each shared resource is opened once, on first use, and everything opened is
closed once, in reverse order, even when one close fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent import app
from agent.app import Runtime
from agent.config import Config, Credential, LocalStoreConfig, TenantConfig
from agent.errors import ConfigError, StoreError
from agent.siem.config import parse as parse_siem

TENANT = "00000000-0000-0000-0000-000000000001"


class Recorder:
    """What was opened and closed, in order."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[str] = []
        self.failing: set[str] = set()

    def close(self, name: str) -> None:
        self.closed.append(name)
        if name in self.failing:
            raise StoreError(f"{name}: cannot close")


class FakeHttp:
    def __init__(self, rec: Recorder, cfg: Any, observe: Any = None) -> None:
        self.rec, self.observe = rec, observe

    async def __aenter__(self) -> FakeHttp:
        self.rec.opened.append("http")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.rec.close("http")


class FakePart:
    def __init__(self, rec: Recorder, name: str) -> None:
        self.rec, self.name = rec, name
        rec.opened.append(name)

    async def aclose(self) -> None:
        self.rec.close(self.name)


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(app, "HttpClient", lambda cfg, observe=None: FakeHttp(rec, cfg, observe))
    monkeypatch.setattr(app, "open_store", lambda cfg: FakePart(rec, "store"))
    monkeypatch.setattr(app, "open_siem", lambda siem_cfg, cfg, http, tokens: FakePart(rec, "siem"))
    return rec


def _cfg(tmp_path: Path, siem: bool = True) -> Config:
    (tmp_path / "key").write_text("k")
    tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=("graph.directory_audits",))
    return Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"),
                  siem=parse_siem({"type": "elastic", "url": "https://127.0.0.1:9",
                                   "api_key_file": str(tmp_path / "key")}) if siem else None)


async def test_each_part_opens_once_and_everything_closes_in_reverse_order(tmp_path: Path, rec: Recorder) -> None:
    cfg = _cfg(tmp_path)
    async with Runtime.open(cfg) as rt:
        assert rec.opened == ["http"], "the store and the SIEM open on first use"
        assert rt.store is rt.store and rt.archive is rt.archive and rt.archive.store is rt.store
        assert rt.siem is rt.siem and rt.siem_config is not None and rt.siem_config.type == "elastic"
        tenant = cfg.tenants[0]
        assert rt.tokens(tenant) is rt.tokens(tenant), "one token provider (one msal cache) per tenant and resource"
        assert rt.tokens(tenant, "https://manage.office.com") is not rt.tokens(tenant)
        assert rt.tokens(tenant).scopes == [f"{tenant.endpoints.graph}/.default"]
        assert rec.opened == ["http", "store", "siem"]
        assert rec.closed == []
    assert rec.closed == ["siem", "store", "http"]


async def test_a_failing_close_does_not_keep_the_others_open(tmp_path: Path, rec: Recorder) -> None:
    rec.failing = {"store"}
    with pytest.raises(StoreError, match="store: cannot close"):
        async with Runtime.open(_cfg(tmp_path)) as rt:
            assert rt.store is not None and rt.siem is not None
    assert rec.closed == ["siem", "store", "http"], "the SIEM before, the HTTP client after, each once"


async def test_an_error_inside_closes_everything_and_propagates(tmp_path: Path, rec: Recorder) -> None:
    with pytest.raises(KeyError):
        async with Runtime.open(_cfg(tmp_path)) as rt:
            assert rt.store is not None
            raise KeyError("a bug in the command")
    assert rec.closed == ["store", "http"], "only what was opened is closed"


async def test_no_siem_table_means_no_siem_and_a_siem_that_cannot_open_is_not_kept(
        tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Runtime.open(_cfg(tmp_path, siem=False)) as rt:
        assert rt.siem is None and rt.siem_config is None
    assert rec.closed == ["http"]

    attempts: list[int] = []

    def refuse(*_: object) -> None:
        attempts.append(1)
        raise ConfigError("siem: Sentinel needs a [[tenants]] entry")

    monkeypatch.setattr(app, "open_siem", refuse)
    rec.closed.clear()
    async with Runtime.open(_cfg(tmp_path)) as rt:
        for _ in range(2):  # raised where the SIEM is needed, each time; nothing half-open is kept
            with pytest.raises(ConfigError):
                _ = rt.siem
    assert attempts == [1, 1] and rec.closed == ["http"]


async def test_the_real_parts_open_and_close(tmp_path: Path) -> None:
    """Without fakes: the HTTP client is usable inside and closed after; the store is a real one."""
    cfg = _cfg(tmp_path, siem=False)
    async with Runtime.open(cfg) as rt:
        await rt.archive.write(TENANT, "graph.directory_audits", [
            {"id": "a", "activityDateTime": "2026-03-01T10:00:00Z"}])
        http = rt.http
        assert [p async for p in _partitions(rt)]
    with pytest.raises(RuntimeError, match="outside"):
        await http.request("GET", "https://127.0.0.1:9/")


async def _partitions(rt: Runtime) -> Any:
    for part in await rt.archive.partitions(TENANT, "graph.directory_audits"):
        yield part


async def test_a_runtime_without_http_opens_no_client_and_refuses_to_hand_one_out(tmp_path: Path,
                                                                                 rec: Recorder) -> None:
    """`status`, `export` and an offline `check` open the runtime with `http=False`: nothing they call can
    reach the network, and a part that would need it fails loudly instead of opening a client."""
    async with Runtime.open(_cfg(tmp_path), http=False) as rt:
        assert rt.store is not None and rt.archive.store is rt.store
        with pytest.raises(RuntimeError, match="without an HTTP client"):
            _ = rt.http
        with pytest.raises(RuntimeError, match="without an HTTP client"):
            _ = rt.siem
    assert rec.opened == ["store"] and rec.closed == ["store"]


async def test_the_backfill_writer_is_built_once_and_a_missing_siem_is_a_config_error(
        tmp_path: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    monkeypatch.setattr(app, "open_writer", lambda siem_cfg, cfg, http, tokens: built.append(http) or object())
    async with Runtime.open(_cfg(tmp_path)) as rt:
        assert rt.writer is rt.writer and built == [rt.http]
    async with Runtime.open(_cfg(tmp_path, siem=False)) as rt:
        with pytest.raises(ConfigError, match=r"\[siem\]"):
            _ = rt.writer


async def test_the_collector_takes_its_token_providers_from_the_runtime(tmp_path: Path) -> None:
    """One msal cache per (tenant, resource) in the process: the collector's Graph and Management API
    sources hold the runtime's providers, not providers of their own."""
    from agent.collect import Collector

    cfg = _cfg(tmp_path, siem=False)
    tenant = cfg.tenants[0]
    async with Runtime.open(cfg) as rt:
        asked: list[str] = []

        def tokens(t: TenantConfig, resource: str) -> Any:
            asked.append(resource)
            return rt.tokens(t, resource)

        sources = Collector(cfg, rt.archive, rt.http, tokens=tokens).sources
        assert sources.for_graph(tenant).tokens is rt.tokens(tenant)
        sources.for_stream(tenant, "o365.exchange")
        assert asked[0] == tenant.endpoints.graph and tenant.endpoints.management in asked
        alone = Collector(cfg, rt.archive, rt.http).sources  # without the runtime: a provider of its own
        assert alone.for_graph(tenant).tokens is not rt.tokens(tenant)
