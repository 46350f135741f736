"""Test scenarios for reconciliation: seeded records, SIEM gaps, agent holes, and HTTPS serving.

The full emulator (scenario file -> dataset -> every service) lives on another branch; until it is
merged these tests generate records here, feed the *same* entries to the emulated SIEM (through
`siem_copy`) and to the archive (`Archive.write`), and derive the expected answer from the
entries' own flags, never from anything the agent computed.
"""

from __future__ import annotations

import random
import ssl
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import trustme
from aiohttp import web

from agent.archive.archive import Archive
from agent.store.local import LocalStore
from emulator.siems.siem_copy import TICKS_PER_SECOND, SiemCopy, SiemPlan, copy_stream

TENANT = "6f1c8a52-3a1e-4d6b-9c2f-0d7b1e2a3c4d"
OTHER_TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
WORKSPACE = "7c759f10-1111-4222-8333-944455566677"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ticks_of(dt: datetime) -> int:
    return int((dt - _EPOCH).total_seconds()) * TICKS_PER_SECOND + dt.microsecond * 10


def graph_time(ticks: int) -> str:
    secs, frac = divmod(ticks, TICKS_PER_SECOND)
    return f"{_EPOCH + timedelta(seconds=secs):%Y-%m-%dT%H:%M:%S}.{frac:07d}Z"


def creation_time(ticks: int) -> str:
    return f"{_EPOCH + timedelta(seconds=ticks // TICKS_PER_SECOND):%Y-%m-%dT%H:%M:%S}"


_SIGNIN_TYPES = {"graph.signins.interactive": "interactiveUser", "graph.signins.noninteractive": "nonInteractiveUser",
                 "graph.signins.serviceprincipal": "servicePrincipal",
                 "graph.signins.managedidentity": "managedIdentity"}
_OFFICE = {"o365.exchange": [(1, "Exchange", "Set-Mailbox"), (50, "Exchange", "MailItemsAccessed")],
           "o365.sharepoint": [(6, "SharePoint", "FileAccessed"), (6, "OneDrive", "FileModified")],
           "o365.general": [(25, "MicrosoftTeams", "TeamsSessionStarted")],
           "o365.azure_active_directory": [(15, "AzureActiveDirectory", "UserLoggedIn")],
           "o365.dlp_all": [(13, "Exchange", "DlpRuleMatch"), (11, "SharePoint", "DlpRuleMatch")]}


def make_record(rng: random.Random, stream: str, ticks: int, tenant: str) -> tuple[str, int, dict[str, object]]:
    """(id, ticks, record) shaped as the source API serves it (fields the SIEM copies map)."""
    guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    user = f"user{rng.randrange(50)}@contoso.onmicrosoft.com"
    if stream in _SIGNIN_TYPES:
        return guid, ticks, {
            "id": guid, "createdDateTime": graph_time(ticks), "userPrincipalName": user,
            "userDisplayName": user.split("@")[0], "appDisplayName": "Office 365 Exchange Online",
            "ipAddress": f"40.{rng.randrange(256)}.{rng.randrange(256)}.7", "correlationId": guid,
            "originalRequestId": guid, "status": {"errorCode": rng.choice((0, 0, 50126))},
            "location": {"countryOrRegion": "US"}, "signInEventTypes": [_SIGNIN_TYPES[stream]],
            "isInteractive": stream.endswith("interactive") and "non" not in stream,
            "resourceTenantId": tenant, "homeTenantId": tenant}
    if stream == "graph.directory_audits":
        rid = f"Directory_{guid}_{''.join(rng.choice('ABCDEFGH0123') for _ in range(5))}_{rng.randrange(10**7, 10**8)}"
        return rid, ticks, {"id": rid, "activityDateTime": graph_time(ticks), "activityDisplayName": "Update user",
                            "category": "UserManagement", "correlationId": guid, "result": "success",
                            "operationType": "Update", "loggedByService": "Core Directory",
                            "initiatedBy": {"user": {"userPrincipalName": user}}, "targetResources": []}
    if stream == "graph.provisioning":
        return guid, ticks, {"id": guid, "activityDateTime": graph_time(ticks), "jobId": "aws.x",
                             "provisioningAction": "create", "provisioningStatusInfo": {"status": "success"}}
    rtype, workload, op = rng.choice(_OFFICE[stream])
    ticks -= ticks % TICKS_PER_SECOND  # CreationTime has whole seconds
    return guid, ticks, {"CreationTime": creation_time(ticks), "Id": guid, "Operation": op,
                         "OrganizationId": tenant, "RecordType": rtype, "ResultStatus": "Succeeded",
                         "UserKey": "10032000C757D25F", "UserType": 0, "Version": 1, "Workload": workload,
                         "UserId": user, "ClientIP": "40.1.2.3"}


@dataclass
class Entry:
    id: str
    ticks: int
    body: bytes
    in_siem: bool = True
    in_agent: bool = True


@dataclass
class Gap:
    stream: str  # or "*"
    start: datetime
    end: datetime
    fraction: float = 1.0
    side: str = "siem"  # "siem": the SIEM lost them; "agent": the archive lacks them


@dataclass
class Scenario:
    start: datetime
    end: datetime
    records: dict[str, int]
    gaps: list[Gap] = field(default_factory=list)
    tenant: str = TENANT
    seed: int = 7
    plan: SiemPlan = field(default_factory=SiemPlan)
    entries: dict[str, list[Entry]] = field(default_factory=dict)

    def generate(self) -> Scenario:
        span = ticks_of(self.end) - ticks_of(self.start)
        for stream, n in self.records.items():
            rng = random.Random(f"{self.seed}|{stream}")
            out = []
            for _ in range(n):
                rid, ticks, rec = make_record(rng, stream, ticks_of(self.start) + rng.randrange(span), self.tenant)
                # an exact-size copy: orjson's bytes keep their over-allocated buffer (measured ~10x)
                out.append(Entry(rid, ticks, bytes(memoryview(orjson.dumps(rec)))))
            self._apply_gaps(stream, out)
            self.entries[stream] = out
        return self

    def _apply_gaps(self, stream: str, entries: list[Entry]) -> None:
        rng = random.Random(f"{self.seed}|gaps|{stream}")
        for e in entries:
            for g in self.gaps:
                if g.stream in ("*", stream) and ticks_of(g.start) <= e.ticks < ticks_of(g.end) \
                        and rng.random() < g.fraction:
                    if g.side == "siem":
                        e.in_siem = False
                    else:
                        e.in_agent = False

    def copy(self, extra: Iterable[tuple[str, str, list[Entry]]] = ()) -> SiemCopy:
        out = SiemCopy(self.plan, workspace_id=WORKSPACE)
        for stream, entries in self.entries.items():
            out.streams.append(copy_stream(self.tenant, stream, entries, self.plan, self.seed))
        for tenant, stream, entries in extra:
            out.streams.append(copy_stream(tenant, stream, entries, self.plan, self.seed))
        return out

    async def archive(self, root: Path) -> Archive:
        archive = Archive(LocalStore(root))
        for stream, entries in self.entries.items():
            records = [orjson.loads(e.body) for e in entries if e.in_agent]
            await archive.write(self.tenant, stream, records)
        return archive

    def expected(self, stream: str, copy: SiemCopy | None = None) -> dict[str, set[str]]:
        entries = self.entries[stream]
        dups: set[str] = set()
        if copy is not None:
            seen: set[str] = set()
            for sc in copy.streams:
                if sc.stream == stream and sc.tenant == self.tenant:
                    for r in sc.rows:
                        (dups if r.id in seen else seen).add(r.id)
        return {"missing_in_siem": {e.id for e in entries if e.in_agent and not e.in_siem},
                "missing_in_agent": {e.id for e in entries if e.in_siem and not e.in_agent},
                "duplicates_in_siem": dups}


@dataclass
class Tls:
    ca: trustme.CA
    ca_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        return ctx


def make_tls(tmp: Path) -> Tls:
    ca = trustme.CA()
    path = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Tls(ca, path)


@asynccontextmanager
async def serve(app: web.Application, tls: Tls) -> AsyncIterator[str]:
    """Serve `app` over HTTPS on a loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
