"""An HTTPS proxy in config carries both token requests (msal) and API calls (aiohttp).

A tiny CONNECT proxy on loopback records every tunnel it opens; collection through it must work,
and both the login and the Graph host must have been reached only through it. The machine's
REQUESTS_CA_BUNDLE stays set (as on CI): the emulator CA from `[http] ca_file` must still win.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.emulator_fixture import running_emulator

SCENARIO = """
seed = 11
start = "-6h"
end = "-10m"
[tenant]
id = "3b1f6a52-8d0e-4c1b-a7f4-0f5e9c2d7a11"
license = "p2"
[streams."graph.directory_audits"]
records = 300
[quota]
graph_requests_per_10s = 0
"""


class ConnectProxy:
    """Minimal HTTP CONNECT proxy; `tunnels` lists each host:port it connected to."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        server.close()  # stopped by __exit__: close the listener, the tunnels and the loop in this thread
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(self.loop), return_exceptions=True))
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        self.tunnels.append(target)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    finally:
        dst.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as p:
        yield p


def test_token_and_api_traffic_go_through_the_configured_proxy(tmp_path: Path, proxy: ConnectProxy,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")  # the CI trap
    cfg = tmp_path / "agent.toml"
    args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "archive"))
    with running_emulator(SCENARIO, tmp_path, extra_args=args) as emu:
        text = cfg.read_text().replace("[http]\n", f'[http]\nproxy = "http://127.0.0.1:{proxy.port}"\n', 1)
        cfg.write_text(text)
        run = subprocess.run([sys.executable, "-m", "agent", "collect", "--once", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        login = emu.info["login"].removeprefix("https://")
        graph = emu.info["graph"].removeprefix("https://")
    assert login in proxy.tunnels, proxy.tunnels  # msal's token request
    assert graph in proxy.tunnels, proxy.tunnels  # aiohttp's API calls
    assert set(proxy.tunnels) <= {login, graph}


def test_an_untrusted_certificate_is_a_clear_configuration_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "archive"))
    with running_emulator(SCENARIO, tmp_path, extra_args=args):
        lines = [ln for ln in cfg.read_text().splitlines() if not ln.startswith("ca_file")]
        cfg.write_text("\n".join(lines) + "\n")
        run = subprocess.run([sys.executable, "-m", "agent", "collect", "--once", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1
    assert "TLS verification of the login endpoint failed" in run.stderr and "ca_file" in run.stderr
    assert "Traceback" not in run.stderr
