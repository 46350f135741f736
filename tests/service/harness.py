"""Helpers for service tests: `agent run` as a subprocess, a webhook receiver, metrics scraping.

The agent is the real CLI (`python -m agent run`), pointed by `--write-config` at an emulator
started with `tests.emulator_fixture.running_emulator`; the config is then given the short
cadences a test needs (`service_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from agent.archive.archive import Archive
from agent.store.local import LocalStore
from agent.streams import spec

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ config
def _toml(values: dict[str, object]) -> str:
    return "".join(f"{k} = {orjson.dumps(v).decode() if isinstance(v, str) else str(v).lower()}\n"
                   for k, v in values.items())


def service_config(path: Path, hook_url: str | None, *, service: dict[str, object],
                   collection: dict[str, object], settle: str | None = "0s", http_timeout: str | None = None) -> None:
    """Edit the config the emulator wrote: test cadences, the [service] table, a generic webhook."""
    text = path.read_text(encoding="utf-8")
    lines = _toml(collection)
    text = text.replace("[collection]\n", "[collection]\n" + lines, 1)
    if settle is not None and "[siem]\n" in text:
        text = text.replace("[siem]\n", f'[siem]\nsettle = "{settle}"\n', 1)
    if http_timeout:
        text = text.replace("[http]\n", f'[http]\ntimeout = "{http_timeout}"\n', 1)
    text += "\n[service]\n" + _toml(service)
    text += '\n[log]\nformat = "json"\n'
    if hook_url is not None:
        (path.parent / "hook_url").write_text(hook_url)
        text += '\n[[alerts.webhooks]]\nkind = "generic"\nname = "test"\nurl_file = "hook_url"\n'
    path.write_text(text, encoding="utf-8")


# ------------------------------------------------------------------ webhook receiver
@dataclass
class Receiver:
    url: str
    got: list[dict[str, Any]] = field(default_factory=list)

    def kinds(self) -> Counter[str]:
        return Counter(str(a["kind"]) for a in self.got)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.got if a["kind"] == kind]


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A generic-JSON webhook on 127.0.0.1 recording every alert it is sent."""
    rec = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        rec.got.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ systemd notify socket
class NotifySocket:
    """Stands in for systemd's NOTIFY_SOCKET: collects READY=1 / WATCHDOG=1 / STOPPING=1."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def drain_forever(self, every: float = 0.2) -> None:
        """What systemd does: read as they come (the agent must not depend on it, see sd_notify)."""
        while True:
            self.drain()
            await asyncio.sleep(every)

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ waiting on a condition
async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `condition` until it holds: what takes a fraction of a second here may take seconds on a
    loaded test machine, so a test waits for the state it needs, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ the agent process
class Agent:
    """`python -m agent run` as a subprocess, logging JSON lines to a file."""

    def __init__(self, config: Path, log: Path, args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        self.config, self.log, self.args = config, log, list(args)
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None
        self.port: int | None = None

    async def start(self, timeout: float = 30) -> Agent:
        with open(self.log, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "--config", str(self.config), *self.args,
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=self.env, cwd=REPO)
        started = await self.wait_log("Service started.", timeout)
        self.port = int(str(started["listen"]).rsplit(":", 1)[1])
        return self

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
        return out

    async def wait_log(self, msg: str, timeout: float, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for row in self.lines()[after:]:
                if row.get("msg") == msg:
                    return row
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            await asyncio.sleep(0.2)
        raise AssertionError(f"no log line {msg!r} within {timeout}s:\n{self.log.read_text()[-4000:]}")

    async def get(self, path: str) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.port}{path}") as r:
            return r.status, await r.read()

    async def metrics(self) -> Metrics:
        status, body = await self.get("/metrics")
        assert status == 200
        return Metrics.parse(body.decode())

    async def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """Send `sig`; return (exit code, seconds until the process exited)."""
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"agent did not stop within {timeout}s") from None
        return code, time.monotonic() - began

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Metrics:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return cls(samples)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def sum(self, name: str, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= ls)


# ------------------------------------------------------------------ archive and truth
async def archive_ids(store_dir: Path, tenant: str, stream: str) -> Counter[str]:
    """Every record id in the archive for one stream, with how often it is stored."""
    archive = Archive(LocalStore(store_dir))
    ids: Counter[str] = Counter()
    for part in await archive.partitions(tenant, stream):
        async for rec in archive.records(part):
            ids[str(spec(stream).key(rec))] += 1  # a version key for Defender alerts
    return ids


async def archive_records(store_dir: Path, tenant: str, stream: str) -> list[dict[str, Any]]:
    archive = Archive(LocalStore(store_dir))
    out = []
    for part in await archive.partitions(tenant, stream):
        out += [dict(r) async for r in archive.records(part)]
    return out


def truth_ids(truth: list[dict[str, Any]], tenant: str, stream: str) -> set[str]:
    return {r["id"] for r in truth if r["tenant"] == tenant and r["stream"] == stream and r.get("available", True)}
