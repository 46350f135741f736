"""Small command-line promises an operator relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main
from tests.cli.test_check import _config


@pytest.mark.parametrize("command", ["export", "verify", "collect"])
def test_misspelt_stream_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """`export --stream graph.signin.interactive` printed nothing, exit 0: "nothing stored" to a script."""
    (tmp_path / "secret").write_text("x")
    rc = main([command, "--config", str(_config(tmp_path)), "--stream", "graph.signin.interactive"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--stream graph.signin.interactive: no configured tenant collects it" in err
    assert "graph.signins.interactive" in err, "the valid names are listed"


async def test_stall_alert_names_the_cause_never_none(tmp_path: Path) -> None:
    """A stream stalled without an error (a pass that hangs) was announced with "Last error: None"."""
    from datetime import timedelta

    from agent import config
    from agent.archive.archive import Archive
    from agent.service.supervisor import Service
    from agent.store.local import LocalStore

    (tmp_path / "secret").write_text("x")
    cfg = config.load(_config(tmp_path, '[service]\nstall_threshold = "1s"\nnotices = false\n'))
    svc = Service(cfg)
    sent: list[str] = []

    class Capture:
        async def send(self, alert: object, covers: object = ()) -> bool:
            sent.append(alert.text)  # type: ignore[attr-defined]
            return True

    svc.alerter = Capture()  # type: ignore[assignment]
    svc.health.started -= 5
    await svc._check_stream(Archive(LocalStore(tmp_path / "archive")), cfg.tenants[0],
                            "graph.signins.interactive", timedelta(seconds=1).total_seconds())
    assert sent and "None" not in sent[0] and "No pass has finished since the service started" in sent[0]


def test_second_run_on_a_used_port_says_so_in_one_line(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "secret").write_text("x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = _config(tmp_path, f'[service]\nlisten = "127.0.0.1:{port}"\nnotices = false\n')
        proc = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
                              timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"agent: cannot listen on 127.0.0.1:{port} ([service] listen): address already "
                                   "in use (is another `agent run` listening?)")
    assert "Traceback" not in proc.stdout and "Unexpected error" not in proc.stdout
