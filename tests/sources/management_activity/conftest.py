"""An in-process fake of the Office 365 Management Activity API over TLS, and a wired-up source.

The fake follows the documented shapes (protocols.md §2): subscriptions list/start, content listing
with a NextPageUri header (links use `/api/v1/` and omit PublisherIdentifier, as Microsoft's example
does), blobs at `{root}/audit/{contentId}`, `{"error":{"code":"AF…"}}` bodies, the 7-day / 24-h window
checks against its own clock, and a Date header from that clock. Faults are queued per target.
Every request is logged; the teardown checks PublisherIdentifier was on all of them and that
nothing ever called `subscriptions/stop`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import trustme
from aiohttp import web

from agent.archive.archive import Archive
from agent.archive.codec import format_time
from agent.checkpoint import StoreState
from agent.collect import Collector, StreamOutcome
from agent.config import CollectionConfig, Config, Credential, Endpoints, HttpConfig, LocalStoreConfig, TenantConfig
from agent.http import HttpClient, RateLimiter
from agent.sources.management_activity.source import ManagementActivitySource
from agent.store.local import LocalStore
from agent.streams import spec

TENANT = "6f1c8a2e-1111-4222-8333-944455556666"
PUBLISHER = "0a0b0c0d-aaaa-4bbb-8ccc-ddddeeeeffff"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
API_FMT = "%Y-%m-%dT%H:%M:%S"


class Clock:
    """The test's wall clock, shared by the agent and the fake (plus the fake's own skew)."""

    def __init__(self, now: datetime = NOW) -> None:
        self.t = now

    def __call__(self) -> datetime:
        return self.t

    def advance(self, delta: timedelta) -> None:
        self.t += delta


@dataclass
class Blob:
    label: str
    content_type: str
    created: datetime
    records: list[dict[str, Any]]
    expiration: datetime | None = None
    uri: str | None = None  # override the contentUri the listing gives

    @property
    def content_id(self) -> str:  # opaque, `$`-separated like the real ones
        return f"{self.created:%Y%m%d%H%M%S%f}${self.label}$audit_{self.content_type.lower().replace('.', '_')}"


def record(rid: str, when: datetime, **extra: Any) -> dict[str, Any]:
    return {"Id": rid, "CreationTime": when.strftime(API_FMT), "Operation": "Test", "RecordType": 1,
            "OrganizationId": TENANT, **extra}


@dataclass
class Fault:
    status: int
    code: str | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool


class FakeManagementApi:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.skew = timedelta(0)  # server clock minus the test clock
        self.subscriptions: dict[str, str] = {}  # enabled | disabled | admin_disabled
        self.blobs: list[Blob] = []
        self.page_size = 100
        self.next_header = "NextPageUri"
        self.reverse = False  # list newest first, to prove the agent sorts
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.always: dict[str, Fault] = {}
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.blob_delay = 0.0
        self.on_next_page: Callable[[], None] | None = None
        self.on_blob: Callable[[], None] | None = None
        self.base = ""

    # ----------------------------------------------------------------- setup helpers
    def add(self, label: str, content_type: str, created: datetime, n: int = 2, *,
            ids: list[str] | None = None, expiration: datetime | None = None, when: datetime | None = None) -> Blob:
        """A blob of `n` records (or `ids`), all with event time `when` (default: 30 min before `created`)."""
        ids = ids or [f"{label}-r{i}" for i in range(n)]
        when = when or created - timedelta(minutes=30)
        blob = Blob(label, content_type, created, [record(i, when) for i in ids], expiration)
        self.blobs.append(blob)
        return blob

    def fail(self, target: str, status: int, code: str | None = None, *, times: int = 1,
             body: bytes | None = None, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.faults[target].append(Fault(status, code, body, headers or {}))

    def now(self) -> datetime:
        return self.clock() + self.skew

    def count(self, method: str, suffix: str) -> int:
        return sum(1 for r in self.requests if r.method == method and r.path.endswith(suffix))

    def blob_gets(self) -> list[str]:
        return [r.path.rsplit("/audit/", 1)[1] for r in self.requests if "/audit/" in r.path]

    # ----------------------------------------------------------------- responses
    def _json(self, doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        h = {"Date": format_datetime(self.now(), usegmt=True), **(headers or {})}
        return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json", headers=h)

    def _error(self, status: int, code: str, message: str = "") -> web.Response:
        return self._json({"error": {"code": code, "message": message or code}}, status)

    def _fault(self, target: str) -> web.Response | None:
        f = self.faults[target].popleft() if self.faults[target] else self.always.get(target)
        if f is None:
            return None
        if f.body is not None:
            return web.Response(body=f.body, status=f.status, headers={
                "Date": format_datetime(self.now(), usegmt=True), **f.headers})
        return self._json({"error": {"code": f.code, "message": f"injected {f.code}"}}, f.status, f.headers)

    def _log(self, request: web.Request) -> None:
        self.requests.append(Seen(request.method, request.path, dict(request.query),
                                  request.headers.get("Authorization", "").startswith("Bearer ")))

    # ----------------------------------------------------------------- handlers
    async def sub_list(self, request: web.Request) -> web.Response:
        self._log(request)
        return self._fault("list") or self._json([
            {"contentType": ct, "status": "enabled" if st == "enabled" else "disabled", "webhook": None}
            for ct, st in self.subscriptions.items()])

    async def sub_start(self, request: web.Request) -> web.Response:
        self._log(request)
        ct = request.query["contentType"]
        if (f := self._fault("start")) is not None:
            return f
        if self.subscriptions.get(ct) == "enabled":
            return self._error(400, "AF20024", "The subscription is already enabled. No property change.")
        if self.subscriptions.get(ct) == "admin_disabled":
            return self._error(400, "AF20023", "The subscription was disabled by tenant admin")
        self.subscriptions[ct] = "enabled"
        return self._json({"contentType": ct, "status": "enabled", "webhook": None})

    async def sub_stop(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.Response(status=200)

    async def content(self, request: web.Request) -> web.Response:
        self._log(request)
        q = request.query
        paging = "nextPage" in q
        if paging and self.on_next_page:
            self.on_next_page()
        if (f := self._fault("next" if paging else "content")) is not None:
            return f
        ct = q["contentType"]
        state = self.subscriptions.get(ct)
        if state == "admin_disabled":
            return self._error(400, "AF20023", "The subscription was disabled by tenant admin")
        if state != "enabled":
            return self._error(400, "AF20022", "No subscription found for the specified content type")
        try:
            start = datetime.strptime(q["startTime"], API_FMT).replace(tzinfo=UTC)
            end = datetime.strptime(q["endTime"], API_FMT).replace(tzinfo=UTC)
        except (KeyError, ValueError):
            return self._error(400, "AF20002", "Invalid parameter type")
        if start >= end:
            return self._error(400, "AF20055", "Start time must precede end time")
        if end - start > timedelta(hours=24) or start < self.now() - timedelta(days=7):
            return self._error(400, "AF20030", "Start time and end time must both be specified (or both omitted) "
                                               "and must be less than or equal to 24 hours apart, with the start "
                                               "time no more than 7 days in the past.")
        found = sorted((b for b in self.blobs if b.content_type == ct and start <= b.created < end),
                       key=lambda b: (b.created, b.content_id), reverse=self.reverse)
        offset = int(q.get("nextPage", "0"))
        page = found[offset:offset + self.page_size]
        headers = {}
        if offset + self.page_size < len(found):
            link = {"contentType": ct, "startTime": q["startTime"], "endTime": q["endTime"],
                    "nextPage": str(offset + self.page_size)}
            headers[self.next_header] = f"{self.base}/api/v1/{TENANT}/activity/feed/subscriptions/content?" \
                                        f"{urlencode(link)}"
        return self._json([self._entry(b) for b in page], headers=headers)

    def _entry(self, b: Blob) -> dict[str, Any]:
        exp = b.expiration or b.created + timedelta(days=7)
        return {"contentType": b.content_type, "contentId": b.content_id,
                "contentUri": b.uri or f"{self.base}/api/v1.0/{TENANT}/activity/feed/audit/{b.content_id}",
                "contentCreated": b.created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "contentExpiration": exp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"}

    async def blob(self, request: web.Request) -> web.Response:
        self._log(request)
        if self.on_blob:
            self.on_blob()
        cid = request.match_info["content_id"]
        blob = next((b for b in self.blobs if b.content_id == cid), None)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.blob_delay:
                await asyncio.sleep(self.blob_delay)
            if blob is not None and (f := self._fault(f"blob:{blob.label}") or self._fault("blob")) is not None:
                return f
            if blob is None:
                return self._error(404, "AF20050", "The content requested does not exist.")
            if (blob.expiration or blob.created + timedelta(days=7)) <= self.now():
                return self._error(400, "AF20051", "Content requested with the key has already expired.")
            return self._json(blob.records)
        finally:
            self.in_flight -= 1

    def app(self) -> web.Application:
        app = web.Application()
        for version in ("v1.0", "v1"):  # next-page links use /api/v1/ (Microsoft's example)
            root = f"/api/{version}/{TENANT}/activity/feed"
            app.router.add_get(f"{root}/subscriptions/list", self.sub_list)
            app.router.add_post(f"{root}/subscriptions/start", self.sub_start)
            app.router.add_post(f"{root}/subscriptions/stop", self.sub_stop)
            app.router.add_get(f"{root}/subscriptions/content", self.content)
            app.router.add_get(f"{root}/audit/{{content_id}}", self.blob)
        return app


class FakeTokens:
    def __init__(self) -> None:
        self.issued = 0
        self.invalidated = 0

    async def token(self) -> str:
        self.issued += 1
        return f"test-token-{self.invalidated}"

    async def invalidate(self) -> None:
        self.invalidated += 1


class CountingLimiter(RateLimiter):
    def __init__(self) -> None:
        super().__init__(2000, 60.0)
        self.acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1
        await super().acquire()


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@dataclass
class Env:
    fake: FakeManagementApi
    clock: Clock
    source: ManagementActivitySource
    collector: Collector
    archive: Archive
    store: LocalStore
    tokens: FakeTokens
    limiter: CountingLimiter
    sleeps: list[float]

    async def run(self, *streams: str) -> dict[str, StreamOutcome]:
        return {o.stream: o for o in await self.collector.collect(list(streams))}

    async def records(self, stream: str) -> list[dict[str, Any]]:
        out = []
        for part in await self.archive.partitions(TENANT, stream):
            out.extend([r async for r in self.archive.records(part)])
        return out

    async def status(self, stream: str) -> dict[str, Any]:
        return await self.collector.checkpoints.load_status(TENANT, stream)

    async def cursor(self, stream: str) -> datetime | None:
        c = await self.collector.checkpoints.load(TENANT, stream)
        return c.position if c else None

    async def ledgers(self, stream: str) -> list[dict[str, Any]]:
        prefix = f"_meta/ledger/tenant={TENANT}/stream={stream}/"
        keys = [k async for k in self.store.list(prefix) if not k.endswith("fetched.json")]
        return [orjson.loads(await self.store.get(k)) | {"key": k} for k in keys]

    async def accounted(self, stream: str) -> dict[str, Any]:
        doc = orjson.loads(await self.store.get(f"_meta/ledger/tenant={TENANT}/stream={stream}/fetched.json"))
        return dict(doc["content"])

    def gets_of(self, stream: str) -> int:
        return self.fake.count("GET", "/subscriptions/content")


def make_cfg(**overrides: Any) -> CollectionConfig:
    base: dict[str, Any] = {"management_concurrency": 4, "max_attempts": 3, "management_window": timedelta(hours=24)}
    return CollectionConfig(**(base | overrides))


@pytest.fixture
def cfg_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def fake(ca: tuple[trustme.CA, Path]) -> AsyncIterator[FakeManagementApi]:
    """The fake API on 127.0.0.1 over TLS, every subscription enabled."""
    fake = FakeManagementApi(Clock())
    for s in ("o365.exchange", "o365.sharepoint", "o365.general", "o365.azure_active_directory", "o365.dlp_all"):
        fake.subscriptions[spec(s).content_type] = "enabled"
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca[0].issue_cert("127.0.0.1").configure_cert(server_ctx)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx).start()
    fake.base = f"https://127.0.0.1:{runner.addresses[0][1]}"
    yield fake
    await runner.cleanup()
    # Contract checks on every test: PublisherIdentifier everywhere, a bearer token, and never a stop.
    missing = [r.path for r in fake.requests if r.query.get("PublisherIdentifier") != PUBLISHER]
    assert not missing, f"requests without PublisherIdentifier: {missing}"
    assert all(r.authorized for r in fake.requests)
    assert fake.count("POST", "/subscriptions/stop") == 0


def tenant_for(fake: FakeManagementApi) -> TenantConfig:
    return TenantConfig(id=TENANT, client_id="11111111-2222-4333-8444-555555555555", credential=Credential(),
                        publisher_id=PUBLISHER,
                        endpoints=Endpoints("https://127.0.0.1:1", "https://127.0.0.1:1", fake.base))


@pytest.fixture
async def env(fake: FakeManagementApi, ca: tuple[trustme.CA, Path], tmp_path: Path,
              cfg_overrides: dict[str, Any]) -> AsyncIterator[Env]:
    clock = fake.clock
    tenant = tenant_for(fake)
    cfg = make_cfg(**cfg_overrides)
    store = LocalStore(tmp_path / "store")
    archive = Archive(store)
    tokens, limiter, sleeps = FakeTokens(), CountingLimiter(), []

    async def fast_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    async with HttpClient(HttpConfig(ca_file=ca[1])) as http:
        source = ManagementActivitySource(tenant, http, tokens, limiter, cfg,  # type: ignore[arg-type]
                                          StoreState(store, "ledger", TENANT),
                                          clock=clock, sleep=fast_sleep, throttle_wait=0.01)
        config = Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "store"), collection=cfg)
        collector = Collector(config, archive, http, clock=clock)
        collector.sources._by_key[(TENANT, "management_activity")] = source
        yield Env(fake, clock, source, collector, archive, store, tokens, limiter, sleeps)


def iso(dt: datetime) -> str:
    return format_time(dt)
