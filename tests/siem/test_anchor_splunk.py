"""`[[anchors]] type = "siem"` on Splunk: one HEC event per head (indexer acknowledgement), read back
through the search export, over HTTPS on the emulated search head and HEC port."""

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
from agent.http import HttpClient
from agent.siem.splunk.anchor import SOURCETYPE
from agent.store.local import LocalStore
from emulator.siems import splunk as splunk_emu
from emulator.siems.siem_copy import SiemCopy, SiemPlan
from tests.siem.fixtures import TENANT, WORKSPACE, make_tls, serve

S = "graph.signins.interactive"
TOKEN = "splunk-anchor-token-0001"


def signin(i: int) -> dict[str, object]:
    return {"id": f"00000000-0000-4000-8000-{i:012d}", "createdDateTime": f"2026-11-01T10:{i:02d}:00Z"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[config.Config, HttpClient, splunk_emu.SplunkServer]]:
    copy = SiemCopy(SiemPlan(), workspace_id=WORKSPACE)
    server = splunk_emu.SplunkServer(copy, TOKEN, True)
    tls = make_tls(tmp_path)
    os.environ["TEST_ANCHOR_SPLUNK_TOKEN"] = TOKEN
    os.environ["TEST_ANCHOR_CLIENT_SECRET"] = "unused"
    async with serve(splunk_emu.app(copy, token=TOKEN, server=server), tls) as url, \
            serve(splunk_emu.hec_app(server), tls) as hec:
        cfg = config.parse({
            "tenants": [{"id": TENANT, "client_id": "11111111-2222-4333-8444-555555555555",
                         "client_secret_env": "TEST_ANCHOR_CLIENT_SECRET", "streams": [S]}],
            "store": {"type": "local", "path": str(tmp_path / "archive")},
            "siem": {"type": "splunk", "url": url, "token_env": "TEST_ANCHOR_SPLUNK_TOKEN", "hec_url": hec,
                     "hec_token_env": "TEST_ANCHOR_SPLUNK_TOKEN", "hec_ack_interval": "50ms"},
            "anchors": [{"type": "siem", "index": "agent_heads"}]})
        async with HttpClient(config.HttpConfig(ca_file=tls.ca_file, timeout=timedelta(seconds=30))) as http:
            yield cfg, http, server


async def test_heads_go_to_splunk_and_verify_reads_them(rig: Any, tmp_path: Path) -> None:
    cfg, http, server = rig
    store = LocalStore(tmp_path / "archive")
    archive, anchors = Archive(store), Anchors(cfg.anchors, cfg, http, TokenProviders(cfg.http))
    refs = []
    for round_ in range(2):
        result = await archive.write(TENANT, S, [signin(round_ * 10 + i) for i in range(3)])
        refs.append(result.manifest)
        await anchors.publish(store, TENANT, S)
    anchor = open_anchor(cfg.anchors[0], cfg, http, TokenProviders(cfg.http))
    assert anchor.label == "siem:splunk:agent_heads"
    assert [(h.seq, h.sha256, h.records) for h in await anchor.heads(TENANT, S)] == \
        [(r.seq, r.sha256, r.records) for r in refs]
    assert {(e.index, e.sourcetype) for e in server.events} == {("agent_heads", SOURCETYPE)}
    assert (await verify(store, anchors=[anchor])).ok
    await store.delete(refs[1].key)  # the store's writer cuts the tail; Splunk still holds the head
    report = await verify(store, anchors=[anchor])
    assert [(p.seq, p.kind) for p in report.anchor_problems] == [(1, "truncated")]


async def test_a_head_indexed_twice_counts_once(rig: Any, tmp_path: Path) -> None:
    """HEC has no create-once: a resend after a lost acknowledgement indexes the head again."""
    cfg, http, server = rig
    anchor = open_anchor(cfg.anchors[0], cfg, http, TokenProviders(cfg.http))
    head = Head(TENANT, S, 0, "b" * 64, 3)
    for _ in range(2):
        await anchor.publish(head, "m")
    assert len(server.events) == 2
    assert await anchor.heads(TENANT, S) == [head]
    assert await anchor.heads(TENANT, "graph.directory_audits") == []


def test_splunk_anchor_needs_the_hec_keys(tmp_path: Path) -> None:
    os.environ["TEST_ANCHOR_SPLUNK_TOKEN"] = TOKEN
    cfg = config.parse({
        "tenants": [{"id": TENANT, "client_id": "11111111-2222-4333-8444-555555555555",
                     "client_secret_env": "X", "streams": [S]}],
        "store": {"type": "local", "path": str(tmp_path)},
        "siem": {"type": "splunk", "url": "https://splunk.example:8089", "token_env": "TEST_ANCHOR_SPLUNK_TOKEN"},
        "anchors": [{"type": "siem"}]})
    assert cfg.anchors[0].index == "main"
    with pytest.raises(config.ConfigError, match="hec_url"):
        open_anchor(cfg.anchors[0], cfg, http=object(), tokens=TokenProviders(cfg.http))  # type: ignore[arg-type]
