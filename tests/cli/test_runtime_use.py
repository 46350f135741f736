"""Commands that never send a request open no HTTP client: `status`, `export`, `verify` without a SIEM
anchor and `check` without --online take only the store from the runtime (agent/app.py), so nothing
they call can reach the network, even with a `[siem]` table configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main
from agent.http import HttpClient

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP client entered during the test."""
    seen: list[str] = []
    enter = HttpClient.__aenter__

    async def recording(self: HttpClient) -> HttpClient:
        seen.append("http")
        return await enter(self)

    monkeypatch.setattr(HttpClient, "__aenter__", recording)
    return seen


def _config(tmp_path: Path) -> Path:
    (tmp_path / "secret").write_text("x")
    (tmp_path / "key").write_text("k")
    p = tmp_path / "agent.toml"
    p.write_text(f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
streams = ["graph.directory_audits", "o365.azure_active_directory"]

[store]
type = "local"
path = "archive"

[siem]
type = "elastic"
url = "https://127.0.0.1:9"
api_key_file = "key"
""")
    return p


@pytest.mark.parametrize(("argv", "rc"), [
    (["check"], 0),
    (["status", "--json"], 0),
    (["export"], 0),
    (["verify"], 0),
])
def test_an_offline_command_opens_no_http_client(tmp_path: Path, opened: list[str], argv: list[str], rc: int,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "archive").mkdir()
    assert main([*argv, "--config", str(_config(tmp_path))]) == rc, capsys.readouterr()
    assert opened == []


def test_the_recorder_sees_a_command_that_does_open_one(tmp_path: Path, opened: list[str]) -> None:
    """The other half: `triangulate` opens the client (for the count witness; with no witnessed stream
    it sends nothing, and an archive without records judges no hour: exit 1)."""
    (tmp_path / "archive").mkdir()
    assert main(["triangulate", "--config", str(_config(tmp_path))]) == 1
    assert opened == ["http"]
