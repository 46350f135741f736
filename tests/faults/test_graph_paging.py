"""Graph paging and bodies the emulator does not produce: a looping `@odata.nextLink`, a page that
links to itself forever, malformed 200 bodies, and the documented fatal 403s. The real Collector and
GraphSource run over a scripted in-process HTTP client (no sockets: the answers are the subject)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import zstandard

from agent.archive.archive import Archive
from agent.collect import Collector, StreamOutcome
from agent.config import CollectionConfig, Config, Credential, Endpoints, LocalStoreConfig, TenantConfig
from agent.http import RateLimiter, Response
from agent.logs import register_secret
from agent.sources.graph.source import GraphSource
from agent.store.local import LocalStore
from tests.faults.matrix import FAILURE, GAP, RETRIED

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
BASE = "https://graph.test"
STREAM = "graph.directory_audits"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SECRET_TOKEN = "graph-bearer-secret-0123456789"


def page(ids: list[str], nxt: str | None = None) -> bytes:
    doc: dict[str, Any] = {"value": [{"id": i, "activityDateTime": "2026-03-10T10:00:00Z"} for i in ids]}
    if nxt:
        doc["@odata.nextLink"] = nxt
    return orjson.dumps(doc)


@dataclass
class ScriptedHttp:
    """`answer(url)` -> (status, body, headers); the first page is the one asked with a query."""

    answer: Callable[[str], tuple[int, bytes, dict[str, str]]]
    urls: list[str] = field(default_factory=list)

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      params: Mapping[str, str] | None = None, data: bytes | None = None,
                      tag: tuple[str, str] | None = None) -> Response:
        assert headers is not None and headers["Authorization"] == f"Bearer {SECRET_TOKEN}"
        key = "FIRST" if params else url
        self.urls.append(key)
        status, body, extra = self.answer(key)
        return Response(status, extra, body, url)


class Tokens:
    async def token(self) -> str:
        return register_secret(SECRET_TOKEN)  # as agent.auth.TokenProvider does with every token

    async def invalidate(self) -> None:
        return None


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.http.backoff", lambda *a, **k: 0.0)


async def collect(tmp_path: Path, http: ScriptedHttp) -> tuple[StreamOutcome, Collector, list[dict[str, Any]]]:
    tenant = TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                          streams=(STREAM,), endpoints=Endpoints("https://login.test", BASE, "https://mgmt.test"))
    cfg = CollectionConfig(window=timedelta(hours=6), initial_lookback=timedelta(hours=4), max_attempts=5)
    archive = Archive(LocalStore(tmp_path / "store"))
    config = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), collection=cfg)
    collector = Collector(config, archive, http, clock=lambda: NOW)  # type: ignore[arg-type]
    source = GraphSource(tenant, http, Tokens(), RateLimiter(1000, 1.0), cfg)  # type: ignore[arg-type]
    collector.sources._by_key[(TENANT, "graph")] = source
    [out] = await collector.collect([STREAM])
    records = [r for p in await archive.partitions(TENANT, STREAM) async for r in _records(archive, p)]
    return out, collector, records


async def _records(archive: Archive, part: Any) -> AsyncIterator[dict[str, Any]]:
    async for r in archive.records(part):
        yield r


async def assert_visible_failure(out: StreamOutcome, collector: Collector, needle: str) -> None:
    assert not out.ok and out.error and needle in out.error, out
    assert SECRET_TOKEN not in out.error
    status = await collector.checkpoints.load_status(TENANT, STREAM)
    assert needle in (status.get("last_error") or "")
    assert await collector.checkpoints.load(TENANT, STREAM) is None  # the only window failed: no cursor


async def test_a_looping_next_link_stops_with_a_clear_error(tmp_path: Path,
                                                           outcome: Callable[[str, str], None]) -> None:
    pages = {"FIRST": page(["a"], f"{BASE}/p2"), f"{BASE}/p2": page(["b"], f"{BASE}/p3"),
             f"{BASE}/p3": page(["c"], f"{BASE}/p2")}
    http = ScriptedHttp(lambda url: (200, pages[url], {}))
    out, collector, records = await collect(tmp_path, http)
    await assert_visible_failure(out, collector, "@odata.nextLink repeats itself")
    assert records == [] and len(http.urls) == 3
    outcome("graph.nextlink_loop", FAILURE)


async def test_empty_pages_linking_to_themselves_forever_give_up(tmp_path: Path,
                                                                outcome: Callable[[str, str], None]) -> None:
    http = ScriptedHttp(lambda url: (200, page(["a"], f"{BASE}/p2") if url == "FIRST" else page([], f"{BASE}/p2"),
                                     {}))
    out, collector, _ = await collect(tmp_path, http)
    await assert_visible_failure(out, collector, "empty pages in a row")
    assert len(http.urls) == 1 + 5  # the first page, then max_attempts empty ones
    outcome("graph.nextlink_stalled", FAILURE)


async def test_malformed_pages_are_retried(tmp_path: Path, outcome: Callable[[str, str], None]) -> None:
    bad = [b'{"value": [{"id": "a"', b"<html><body>Service Unavailable</body></html>", b'{"values": []}',
           b'{"value": [{"id": "a", "activityDateTime": "2026-03-10T10:0']
    seen: dict[str, int] = {}

    def answer(url: str) -> tuple[int, bytes, dict[str, str]]:
        n = seen[url] = seen.get(url, 0) + 1
        if n <= len(bad) and url == "FIRST":
            return 200, bad[n - 1], {}
        return 200, page(["a", "b"], f"{BASE}/p2") if url == "FIRST" else page(["c"]), {}

    out, _, records = await collect(tmp_path, ScriptedHttp(answer))
    assert out.ok, out.error
    assert sorted(r["id"] for r in records) == ["a", "b", "c"]
    outcome("graph.malformed", RETRIED)


BAD_RECORD = b'{"id": "c", "activityDateTime": "2026-03-10T10:00:00Z", "score": NaN}'


async def test_a_page_invalid_on_every_attempt_keeps_its_records_and_names_the_bad_one(
        tmp_path: Path, outcome: Callable[[str, str], None]) -> None:
    """The same invalid JSON on every attempt would fail every pass: the records that parse alone are
    stored, the one that does not is kept byte for byte and named as a gap, its next link is followed,
    and a later pass that fetches it again names no new gap."""
    broken = (b'{"@odata.nextLink": "' + f"{BASE}/p3".encode() + b'", "value": [{"id": "b2", '
              b'"activityDateTime": "2026-03-10T10:00:00Z"}, ' + BAD_RECORD + b"]}")
    pages = {"FIRST": page(["a", "b"], f"{BASE}/p2"), f"{BASE}/p2": broken, f"{BASE}/p3": page(["d"])}
    http = ScriptedHttp(lambda url: (200, pages[url], {}))
    out, collector, records = await collect(tmp_path, http)
    assert out.error is None and not out.ok and len(out.new_gaps) == 1
    assert sorted(r["id"] for r in records) == ["a", "b", "b2", "d"]
    assert http.urls.count(f"{BASE}/p2") == 5  # max_attempts, then salvaged
    [g] = (await collector.checkpoints.load_status(TENANT, STREAM))["gaps"]
    assert "record 1 of a body" in g["reason"] and "not valid JSON" in g["reason"]
    kept = await collector.archive.store.get(g["quarantine"])
    assert zstandard.ZstdDecompressor().decompress(kept) == BAD_RECORD
    cursor = await collector.checkpoints.load(TENANT, STREAM)
    assert cursor is not None and cursor.position == NOW
    again, _, _ = await collect(tmp_path, http)  # the overlap fetches the page again
    assert again.ok and not again.new_gaps
    outcome("graph.invalid_every_attempt", GAP)


async def test_a_page_whose_structure_is_broken_is_kept_whole_and_its_window_named(tmp_path: Path) -> None:
    broken = b'{"value": [' + BAD_RECORD + b"]]}"  # brackets that do not balance: no record boundaries
    http = ScriptedHttp(lambda url: (200, page(["a"], f"{BASE}/p2") if url == "FIRST" else broken, {}))
    out, collector, records = await collect(tmp_path, http)
    assert out.error is None and len(out.new_gaps) == 1 and [r["id"] for r in records] == ["a"]
    [g] = [x.to_doc() for x in out.new_gaps]
    assert "remaining pages could not be followed" in g["reason"] and g["window"]["start"] == "2026-03-10T08:00:00Z"
    assert zstandard.ZstdDecompressor().decompress(await collector.archive.store.get(g["quarantine"])) == broken


async def test_page_entries_that_are_not_objects_are_set_aside(tmp_path: Path,
                                                               outcome: Callable[[str, str], None]) -> None:
    body = b'{"value": [{"id": "a", "activityDateTime": "2026-03-10T10:00:00Z"}, "not an object", 7]}'
    out, _, records = await collect(tmp_path, ScriptedHttp(lambda url: (200, body, {})))
    assert out.error is None and len(out.new_gaps) == 2
    assert [r["id"] for r in records] == ["a"]
    reasons = sorted(g.reason for g in out.new_gaps)
    assert "a int where a record" in reasons[0] and "a str where a record" in reasons[1]
    outcome("graph.non_object_record", GAP)


async def test_records_past_year_9999_or_without_an_id_are_named_in_the_status(tmp_path: Path) -> None:
    body = (b'{"value": [{"id": "a", "activityDateTime": "2026-03-10T10:00:00Z"},'
            b' {"id": "far", "activityDateTime": "10000-01-01T00:00:00Z"},'
            b' {"activityDateTime": "2026-03-10T10:00:00Z"}]}')
    out, collector, records = await collect(tmp_path, ScriptedHttp(lambda url: (200, body, {})))
    assert [r["id"] for r in records] == ["a"]
    gaps = (await collector.checkpoints.load_status(TENANT, STREAM))["gaps"]
    assert [g.to_doc() for g in out.new_gaps] == gaps and len(gaps) == 2
    assert all("without a usable id or activityDateTime" in g["reason"] for g in gaps)
    kept = [r for g in gaps async for r in _quarantined(collector.archive, g["quarantine"])]
    assert sorted(str(r.get("id")) for r in kept) == ["None", "far"]


async def _quarantined(archive: Archive, key: str) -> AsyncIterator[dict[str, Any]]:
    from agent.archive import codec

    for r in codec.decode(await archive.store.get(key)):
        yield r


@pytest.mark.parametrize(("key", "code", "needle"), [
    ("graph.403", "Authorization_RequestDenied", "AuditLog.Read.All"),
    ("graph.licence", "Authentication_RequestFromNonPremiumTenantOrB2CTenant", "P1 or P2"),
])
async def test_documented_403s_are_fatal_and_say_what_to_fix(tmp_path: Path, key: str, code: str, needle: str,
                                                             outcome: Callable[[str, str], None]) -> None:
    body = orjson.dumps({"error": {"code": code, "message": f"denied for token {SECRET_TOKEN}"}})
    http = ScriptedHttp(lambda url: (403, body, {}))
    out, collector, _ = await collect(tmp_path, http)
    await assert_visible_failure(out, collector, needle)
    # not retried, except the licence answer, which premium tenants also get now and then
    assert len(http.urls) == (3 if key == "graph.licence" else 1)
    outcome(key, FAILURE)


async def test_an_intermittent_licence_answer_costs_a_pause_never_a_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: Callable[[str, str], None]) -> None:
    """microsoft-graph-docs#14120, microsoft-graph-docs-contrib#3759: premium tenants get
    Authentication_RequestFromNonPremiumTenantOrB2CTenant on some requests. Two in a row on the first
    page, then on every other request, even three in a row once the list has answered: all retried."""
    monkeypatch.setattr("agent.sources.graph.source.LICENCE_DELAY", 0.0)
    refusal = orjson.dumps({"error": {"code": "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                                      "message": "Neither tenant is B2C or tenant doesn't have premium license"}})
    script = {"FIRST": [403, 403, 200], f"{BASE}/p2": [403, 403, 403, 200], f"{BASE}/p3": [200]}
    pages = {"FIRST": page(["a", "b"], f"{BASE}/p2"), f"{BASE}/p2": page(["c"], f"{BASE}/p3"),
             f"{BASE}/p3": page(["d"])}

    def answer(url: str) -> tuple[int, bytes, dict[str, str]]:
        status = script[url].pop(0)
        return (status, pages[url] if status == 200 else refusal, {})

    out, _, records = await collect(tmp_path, ScriptedHttp(answer))
    assert out.ok, out.error
    assert sorted(r["id"] for r in records) == ["a", "b", "c", "d"]
    assert all(not v for v in script.values())  # every scripted answer was asked for: 5 refusals retried
    outcome("graph.licence_intermittent", RETRIED)
