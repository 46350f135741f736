"""`agent collect --once` and `agent status` over the Management Activity source: a gap fails both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme

from agent.cli import main as cli
from agent.cli.collect import cmd_collect
from agent.cli.common import EXIT_FAILURE, EXIT_OK
from agent.cli.status import cmd_status
from agent.config import TenantConfig
from agent.http import RateLimiter
from agent.sources.management_activity.source import ManagementActivitySource
from agent.sources.registry import Sources
from tests.sources.management_activity.conftest import PUBLISHER, TENANT, FakeManagementApi, FakeTokens

EXO = "o365.exchange"


def write_config(tmp_path: Path, fake: FakeManagementApi, ca_file: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-4333-8444-555555555555"
client_secret_env = "O365_TEST_UNUSED_SECRET"
publisher_id = "{PUBLISHER}"
streams = ["{EXO}"]
[tenants.endpoints]
management = "{fake.base}"

[store]
type = "local"
path = "{tmp_path / 'store'}"

[collection]
management_window = "6h"
max_attempts = 2

[http]
ca_file = "{ca_file}"
""")
    return path


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds everything as in production, except that tokens come from a fake (no login host)."""

    def build(self: Sources, tenant: TenantConfig, kind: str) -> Any:
        c = self.cfg.collection
        limiter = RateLimiter(c.management_requests_per_minute, 60.0)
        tokens: Any = FakeTokens()
        return ManagementActivitySource(tenant, self.http, tokens, limiter, c, self.keeping.ledger(tenant.id),
                                        throttle_wait=0.01)

    monkeypatch.setattr(Sources, "_build", build)
    monkeypatch.setattr("agent.logs.setup", lambda *a, **k: None)  # keep pytest's log capture intact
    monkeypatch.setenv("O365_TEST_UNUSED_SECRET", "unused")  # `collect` refuses an unset secret (preflight)


async def test_collect_once_fails_when_a_blob_expired_and_status_keeps_the_gap(
        fake: FakeManagementApi, ca: tuple[trustme.CA, Path], tmp_path: Path, patched: None,
        capsys: pytest.CaptureFixture[str]):
    now = datetime.now(UTC)
    fake.clock.t = now  # the CLI runs on the real clock
    fake.add("fine", "Audit.Exchange", now - timedelta(hours=2))
    gone = fake.add("gone", "Audit.Exchange", now - timedelta(hours=3))
    fake.fail("blob:gone", 400, "AF20051")
    config = str(write_config(tmp_path, fake, ca[1]))
    parser = cli.build_parser()

    assert await cmd_collect(parser.parse_args(["collect", "--once", "-c", config])) == EXIT_FAILURE
    [outcome] = [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert outcome["gaps"] == 1 and outcome["error"] is None and outcome["stored"] == 2

    assert await cmd_status(parser.parse_args(["status", "--json", "-c", config])) == EXIT_FAILURE
    [row] = orjson.loads(capsys.readouterr().out)
    assert [g["content_id"] for g in row["gaps"]] == [gone.content_id]

    # The next pass adds nothing new, so it succeeds; the recorded gap stays visible in status.
    assert await cmd_collect(parser.parse_args(["collect", "--once", "-c", config])) == EXIT_OK
    assert await cmd_status(parser.parse_args(["status", "-c", config])) == EXIT_FAILURE
    row = next(ln for ln in capsys.readouterr().out.splitlines() if "o365.exchange" in ln)
    assert "archive gap" in row and "2  1  " in row  # state; records 2, gaps 1
