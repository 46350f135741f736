"""The ledger's fetched-set pruning and the Management Activity config keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from agent.checkpoint import Checkpoints, Gap, StoreState
from agent.config import parse
from agent.errors import ConfigError
from agent.sources.base import Window
from agent.sources.management_activity.api import Content
from agent.sources.management_activity.ledger import LOST, StreamLedger, gap
from agent.store.local import LocalStore

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


def content(cid: str, created: datetime) -> Content:
    return Content(cid, f"https://h/audit/{cid}", created, created + timedelta(days=7))


async def test_fetched_set_survives_restarts_and_drops_entries_a_day_after_expiry(tmp_path: Path):
    store = LocalStore(tmp_path)
    state = StoreState(store, "ledger", "t")
    ledger = await StreamLedger(state, "t", "o365.exchange").load()
    await ledger.commit([(content("old", NOW - timedelta(days=8, hours=1)), "fetched"),
                         (content("recent", NOW - timedelta(days=6)), "fetched")], NOW)
    again = await StreamLedger(state, "t", "o365.exchange").load()
    assert again.is_accounted("recent") and not again.is_accounted("old")
    await again.commit([(content("lost", NOW - timedelta(days=7, hours=1)), LOST)], NOW)
    doc = orjson.loads(await store.get("_meta/ledger/tenant=t/stream=o365.exchange/fetched.json"))
    assert doc["content"]["lost"]["state"] == LOST


async def record_gaps(cps: Checkpoints, tenant: str, stream: str, gaps: list[Gap]) -> int:
    """Merge gaps into the stream status as the collector does; how many were new."""
    status = await cps.status(tenant, stream)
    new = status.merge_gaps(gaps)
    await cps.save_status(tenant, stream, status)
    return len(new)


async def test_gaps_merge_into_status_once_per_blob(tmp_path: Path):
    cps = Checkpoints(LocalStore(tmp_path))
    w = Window(NOW - timedelta(hours=1), NOW)
    g = gap("o365.exchange", w, "expired", content("c1", NOW - timedelta(days=7)), NOW)
    assert await record_gaps(cps, "t", "o365.exchange", [g]) == 1
    assert await record_gaps(cps, "t", "o365.exchange", [g]) == 0
    retention = gap("o365.exchange", Window(NOW - timedelta(days=9), NOW - timedelta(days=7)), "retention", None, NOW)
    grown = gap("o365.exchange", Window(NOW - timedelta(days=9), NOW - timedelta(days=6)), "retention", None, NOW)
    assert await record_gaps(cps, "t", "o365.exchange", [retention]) == 1
    assert await record_gaps(cps, "t", "o365.exchange", [grown]) == 0  # same start: the span grew
    status = await cps.load_status("t", "o365.exchange")
    assert len(status["gaps"]) == 2


def config(**collection: str) -> dict:
    return {"tenants": [{"id": "6f1c8a2e-1111-4222-8333-944455556666", "client_id": "c",
                         "client_secret_env": "X"}],
            "store": {"type": "local", "path": "/tmp/x"}, "collection": collection}


def test_management_window_is_validated():
    assert parse(config(management_window="2h")).collection.management_window == timedelta(hours=2)
    assert parse(config()).collection.management_window == timedelta(hours=6)
    for bad in ("25h", "30s"):
        with pytest.raises(ConfigError, match="management_window"):
            parse(config(management_window=bad))
    with pytest.raises(ConfigError, match="management_rescan"):
        parse(config(management_rescan="-1h"))
