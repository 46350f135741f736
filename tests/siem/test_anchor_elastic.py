"""`[[anchors]] type = "siem"` on Elasticsearch: heads written through the `_bulk` write path into the
emulated cluster over HTTPS, read back by verify; the store's writer cannot reach them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.archive.anchors import Anchors, Head, open_anchor
from agent.archive.archive import Archive
from agent.archive.verify import verify
from agent.auth import TokenProviders
from agent.cli.render import verify_text
from agent.http import HttpClient
from agent.siem.elastic.anchor import DATASET
from agent.store.local import LocalStore
from emulator.siems import elastic as elastic_emu
from emulator.siems.siem_copy import SiemCopy, SiemPlan
from tests.siem.fixtures import TENANT, WORKSPACE, make_tls, serve
from tests.siem.harness import ELASTIC_KEY

S = "graph.signins.interactive"


def signin(i: int) -> dict[str, object]:
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "createdDateTime": f"2026-11-01T10:{i:02d}:00Z"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[config.Config, HttpClient, SiemCopy]]:
    copy = SiemCopy(SiemPlan(), workspace_id=WORKSPACE)
    tls = make_tls(tmp_path)
    os.environ["TEST_ANCHOR_ES_KEY"] = ELASTIC_KEY
    os.environ["TEST_ANCHOR_CLIENT_SECRET"] = "unused"
    async with serve(elastic_emu.app(copy, api_key=ELASTIC_KEY), tls) as url:
        cfg = config.parse({
            "tenants": [{"id": TENANT, "client_id": "11111111-2222-4333-8444-555555555555",
                         "client_secret_env": "TEST_ANCHOR_CLIENT_SECRET", "streams": [S]}],
            "store": {"type": "local", "path": str(tmp_path / "archive")},
            "siem": {"type": "elastic", "url": url, "api_key_env": "TEST_ANCHOR_ES_KEY"},
            "anchors": [{"type": "siem"}]})
        async with HttpClient(config.HttpConfig(ca_file=tls.ca_file, timeout=timedelta(seconds=30))) as http:
            yield cfg, http, copy


async def test_heads_go_to_the_siem_and_verify_reads_them(rig: Any, tmp_path: Path) -> None:
    cfg, http, _copy = rig
    store = LocalStore(tmp_path / "archive")
    archive, anchors = Archive(store), Anchors(cfg.anchors, cfg, http, TokenProviders(cfg.http))
    refs = []
    for round_ in range(2):
        result = await archive.write(TENANT, S, [signin(round_ * 10 + i) for i in range(3)])
        refs.append(result.manifest)
        await anchors.publish(store, TENANT, S)
    await anchors.publish(store, TENANT, S)  # nothing new: no second document for the same head
    anchor = open_anchor(cfg.anchors[0], cfg, http, TokenProviders(cfg.http))
    heads = await anchor.heads(TENANT, S)
    assert [(h.seq, h.sha256, h.records) for h in heads] == [(r.seq, r.sha256, r.records) for r in refs]
    assert anchor.label == "siem:elastic:ms-log-agent-chain-heads"
    assert (await verify(store, anchors=[anchor])).ok
    # the store's writer cuts the tail; the SIEM still holds the head
    await store.delete(refs[1].key)
    report = await verify(store, anchors=[anchor])
    assert [(p.seq, p.kind) for p in report.anchor_problems] == [(1, "truncated")]
    assert "siem:elastic:ms-log-agent-chain-heads" in verify_text(report)


async def test_a_head_is_one_create_only_document(rig: Any, tmp_path: Path) -> None:
    """A resend (a retry after an answer that never came) is a 409 from `create`, never a second head."""
    cfg, http, copy = rig
    store = LocalStore(tmp_path / "archive")
    ref = (await Archive(store).write(TENANT, S, [signin(1)])).manifest
    anchor = open_anchor(cfg.anchors[0], cfg, http, TokenProviders(cfg.http))
    for _ in range(2):  # the second answer is a 409 (already there), which is success for a head
        await anchor.publish(Head(TENANT, S, ref.seq, ref.sha256, ref.records), ref.key)
    assert len(await anchor.heads(TENANT, S)) == 1
    assert copy.ingest_requests["elastic"] == 2
    assert DATASET == "ms_log_agent.chain_head"


async def test_sentinel_anchor_needs_the_ingestion_path_and_a_custom_table(tmp_path: Path) -> None:
    """A Sentinel SIEM anchor writes through Logs Ingestion (tests/e2e/test_tamper_e2e.py runs it end
    to end): without a DCR it is refused naming the keys, and its table must be a custom `_CL` one."""
    data = {"tenants": [{"id": TENANT, "client_id": "11111111-2222-4333-8444-555555555555",
                         "client_secret_env": "X", "streams": [S]}],
            "store": {"type": "local", "path": str(tmp_path)},
            "siem": {"type": "sentinel", "workspace_id": WORKSPACE}, "anchors": [{"type": "siem"}]}
    cfg = config.parse(data)
    assert cfg.anchors[0].label == "siem:sentinel:MsLogAgentChainHeads_CL"
    async with HttpClient(config.HttpConfig()) as http:
        with pytest.raises(config.ConfigError, match=r"ingestion_endpoint and siem\.dcr_immutable_id"):
            open_anchor(cfg.anchors[0], cfg, http, TokenProviders(cfg.http))
    with pytest.raises(config.ConfigError, match="custom table"):
        config.parse({**data, "anchors": [{"type": "siem", "index": "SigninLogs"}]})
