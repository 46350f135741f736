"""The CLI's one top-level handler: an unexpected exception is one line on stderr and exit 1, while
the log keeps where it came from; no command prints a traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


def test_an_unexpected_exception_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_: object) -> int:
        raise RuntimeError("boom\nand a second line")

    monkeypatch.setitem(cli.COMMANDS, "status", broken)
    monkeypatch.setattr(logging.getLogger("agent"), "handlers", [])  # none left by earlier tests' captures
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("agent.cli.main").addHandler(handler)
    try:
        code = cli.main(["status", "--config", "unused.toml"])
    finally:
        logging.getLogger("agent.cli.main").removeHandler(handler)
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("agent: unexpected error (RuntimeError at test_cli_errors.py:")
    assert "boom and a second line" in err
    trace = next(r for r in seen if r.levelno == logging.ERROR).fields["trace"]  # type: ignore[attr-defined]
    assert "main.py" in trace and "test_cli_errors.py" in trace and "broken" in trace


def test_a_duration_that_overflows_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["export", "--since", "1000000d", "--config", "unused.toml"])
    assert exc.value.code == 2
    assert "before the year 1" in capsys.readouterr().err


def test_a_damaged_checkpoint_reaches_the_user_as_one_line(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[[tenants]]\nid = "{TENANT}"\nclient_id = "c"\nclient_secret_file = "secret"\n'
                   'streams = ["graph.directory_audits"]\n[store]\npath = "store"\n')
    doc = tmp_path / "store" / "_meta" / "checkpoints" / f"tenant={TENANT}" / "stream=graph.directory_audits.json"
    doc.parent.mkdir(parents=True)
    doc.write_bytes(b'{"version": 1, "position": "2026-')  # cut short
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "agent", "status", "--config", str(cfg)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("agent: ")], proc.stderr


async def test_a_reader_that_goes_away_is_not_a_traceback(tmp_path: Path) -> None:
    """`agent export | head`: the closed pipe ends the export quietly with exit 1, as `cat` does."""
    from agent.archive.archive import Archive
    from agent.store.local import LocalStore

    (tmp_path / "secret").write_text("x")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[[tenants]]\nid = "{TENANT}"\nclient_id = "c"\nclient_secret_file = "secret"\n'
                   'streams = ["graph.directory_audits"]\n[store]\npath = "store"\n')
    records = [{"id": f"id-{i}", "activityDateTime": f"2026-03-01T10:{i % 60:02d}:00Z", "pad": "x" * 500}
               for i in range(2000)]  # ~1 MB of output: far more than a pipe buffer
    await Archive(LocalStore(tmp_path / "store")).write(TENANT, "graph.directory_audits", records)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "export", "--config", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()  # both pipes closed here: an open one is a ResourceWarning (warnings are errors)
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "Exception ignored" not in err, err
