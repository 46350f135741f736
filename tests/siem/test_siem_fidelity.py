"""The emulated SIEMs off the happy path, and the adapters against them over HTTPS.

- Elasticsearch point in time: it expires when unused for `keep_alive` (Elastic docs, "Point in
  time API"); the adapter reopens it and resumes, exactly (each document read once).
- Publication time: a SIEM row shows only once the API served the record (`visible_at`) plus the
  connector's lag, in Splunk and Elasticsearch as in Log Analytics.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

import agent.siem.elastic.reader as elastic_adapter
from agent.reconcile.engine import Options, reconcile
from agent.sources.base import Window
from emulator.siems import elastic as elastic_emu
from emulator.siems.siem_copy import TICKS_PER_SECOND, SiemPlan
from tests.siem.fixtures import TENANT, Scenario
from tests.siem.harness import ELASTIC_KEY, KINDS, running

END = datetime(2026, 3, 2, tzinfo=UTC)
START = END - timedelta(hours=24)
NOW = END + timedelta(hours=8)
STREAM = "graph.signins.interactive"


def _scenario(records: int = 240) -> Scenario:
    return Scenario(START, END, {STREAM: records}, plan=SiemPlan(duplicate_fraction=0.02)).generate()


async def test_emulated_pit_expires_after_keep_alive_unless_used(tmp_path: Path) -> None:
    async with running("elastic", _scenario().copy(), tmp_path) as r:
        http = r.siem.transport.http  # type: ignore[attr-defined]
        headers = {"Authorization": f"ApiKey {ELASTIC_KEY}", "Content-Type": "application/json"}

        async def search(pit: str, keep: str | None) -> tuple[int, dict[str, object]]:
            body = {"size": 1, "pit": {"id": pit, **({"keep_alive": keep} if keep else {})}}
            resp = await http.request("POST", f"{r.url}/_search", headers=headers, data=orjson.dumps(body))
            return resp.status, orjson.loads(resp.body)

        bad = await http.request("POST", f"{r.url}/logs-azure.signinlogs-*/_pit?keep_alive=1x", headers=headers)
        assert bad.status == 400
        # 3 s of life, used every second: a loaded machine has 2 s to spare between two uses
        opened = await http.request("POST", f"{r.url}/logs-azure.signinlogs-*/_pit?keep_alive=3s", headers=headers)
        pit = orjson.loads(opened.body)["id"]
        for _ in range(4):  # each use with keep_alive extends its life past the first 3 s
            await asyncio.sleep(1.0)
            assert (await search(pit, "3s"))[0] == 200
        await asyncio.sleep(3.3)
        status, doc = await search(pit, "3s")
        assert status == 404
        assert doc["error"]["root_cause"][0]["type"] == "search_context_missing_exception"  # type: ignore[index]


async def test_adapter_reopens_an_expired_pit_and_reads_every_document_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(elastic_adapter, "KEEP_ALIVE", "1s")
    scn = _scenario()
    copy = scn.copy()
    want = Counter(r.id for sc in copy.streams for r in sc.rows)
    async with running("elastic", copy, tmp_path, page_size=25) as r:
        got: Counter[str] = Counter()
        async for rid in r.siem.ids(TENANT, STREAM, Window(START, END)):
            got[rid] += 1
            if sum(got.values()) in (60, 130):  # a slow consumer: the PIT expires between two pages
                await asyncio.sleep(1.4)
        state = r.app[elastic_emu.STATE]
        assert not state.pits, "every point in time was closed"
    assert got == want, "each document read once: none skipped, none twice"
    assert sum(want.values()) > len(want), "duplicates in the SIEM stay visible as duplicates"


@pytest.mark.parametrize("kind", KINDS)
async def test_rows_show_only_after_the_api_served_the_record(kind: str, tmp_path: Path) -> None:
    """Rows whose record the API first served an hour from now (a late sign-in, a blob made available
    late) are not in the SIEM yet, whichever SIEM: reconcile reports exactly them missing."""
    scn = _scenario(120)
    copy = scn.copy()
    later = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * TICKS_PER_SECOND)
    rows = copy.streams[0].rows
    late = {row.id for row in rows[::10]}
    for row in rows:
        if row.id in late:
            row.ingested = later
    archive = await scn.archive(tmp_path / "store")
    async with running(kind, copy, tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, STREAM)], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW, siem_name=kind)
    [s] = report.streams
    assert set(s.missing_in_siem) == late
