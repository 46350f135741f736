from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli.main import main

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


def _config(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "secret").write_text("not-a-real-secret-123")
    p = tmp_path / "agent.toml"
    p.write_text(f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"

[store]
type = "local"
path = "archive"
{extra}""")
    return p


def test_check_probes_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(_config(tmp_path))]) == 0
    assert "config ok" in capsys.readouterr().out
    assert not (tmp_path / "archive").exists()  # the probe creates nothing


@pytest.mark.parametrize(("extra", "named"), [
    ("[collection]\nwindw = '1h'\n", "windw"),
    ('[siem]\ntype = "sentinel"\nworkspace_id = "00000000-0000-0000-0000-000000000000"\nendpont = "x"\n',
     "endpont"),
    ('[siem]\ntype = "qradar"\n', "qradar"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                           named: str) -> None:
    assert main(["check", "--config", str(_config(tmp_path, extra))]) == 2
    err = capsys.readouterr().err
    assert named in err and "not-a-real-secret" not in err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--since", "the dawn of time"])
    assert exc.value.code == 2
