"""Small command-line promises an operator relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main
from tests.unit.test_check import _config


@pytest.mark.parametrize("command", ["export", "verify", "collect"])
def test_misspelt_stream_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """`export --stream graph.signin.interactive` printed nothing, exit 0: "nothing stored" to a script."""
    (tmp_path / "secret").write_text("x")
    rc = main([command, "--config", str(_config(tmp_path)), "--stream", "graph.signin.interactive"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--stream graph.signin.interactive: no configured tenant collects it" in err
    assert "graph.signins.interactive" in err, "the valid names are listed"
