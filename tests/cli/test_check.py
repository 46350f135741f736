"""`agent check` offline: every problem knowable without the network is exit 2, naming key and file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.cli.main import main

REPO = Path(__file__).resolve().parents[2]
TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


def _config(tmp_path: Path, tenant_extra: str = "", extra: str = "", secret: str = "secret") -> Path:  # noqa: S107 - a file name
    p = tmp_path / "agent.toml"
    p.write_text(f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "{secret}"
{tenant_extra}
[store]
type = "local"
path = "archive"
{extra}""")
    return p


def _check(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(["check", "--config", str(cfg)])
    return rc, capsys.readouterr().err


def test_missing_client_secret_file_names_key_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _check(_config(tmp_path), capsys)
    assert rc == 2
    assert "tenants[0].client_secret_file" in err and str(tmp_path / "secret") in err and "does not exist" in err
    assert str(tmp_path / "agent.toml") in err


def test_missing_siem_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret").write_text("x")
    siem = '[siem]\ntype = "splunk"\nurl = "https://splunk.example:8089"\ntoken_file = "siem-token"\n'
    rc, err = _check(_config(tmp_path, extra=siem), capsys)
    assert rc == 2 and "siem.token_file" in err and "siem-token does not exist" in err


def test_elastic_key_is_named_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret").write_text("x")
    siem = '[siem]\ntype = "elastic"\nurl = "https://es.example:9200"\napi_key_env = "NO_SUCH_ES_KEY"\n'
    rc, err = _check(_config(tmp_path, extra=siem), capsys)
    assert rc == 2 and "siem.api_key_env: environment variable NO_SUCH_ES_KEY is not set" in err


def test_secret_path_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret").mkdir()
    rc, err = _check(_config(tmp_path), capsys)
    assert rc == 2 and "is a directory" in err


def test_every_problem_is_listed_not_only_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = '[[alerts.webhooks]]\nurl_file = "hook-url"\n'
    rc, err = _check(_config(tmp_path, extra=hook), capsys)
    assert rc == 2
    assert "tenants[0].client_secret_file" in err and "alerts.webhooks[0].url_file" in err


def test_unedited_example_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    example = tmp_path / "agent.toml"
    shutil.copy(REPO / "packaging" / "agent.example.toml", example)
    rc, err = _check(example, capsys)
    assert rc == 2
    assert "tenants[0].id: 00000000-0000-0000-0000-000000000000 is the example's placeholder" in err
    assert "tenants[0].client_id" in err
    assert "tenants[0].certificate_file" in err and "$CREDENTIALS_DIRECTORY is not set" in err
    assert not (tmp_path / "archive").exists()


def test_check_leaves_nothing_in_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run as root (ExecStartPre=+ or by hand with sudo), a `_meta/probe` directory it created stayed
    root-owned, and the service user could no longer write `_meta`."""
    (tmp_path / "secret").write_text("x")
    (tmp_path / "archive").mkdir()
    rc, _ = _check(_config(tmp_path), capsys)
    assert rc == 0
    assert list((tmp_path / "archive").iterdir()) == []


def test_check_does_not_create_a_missing_store_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "secret").write_text("x")
    assert main(["check", "--config", str(_config(tmp_path))]) == 0
    assert "config ok" in capsys.readouterr().out
    assert not (tmp_path / "archive").exists()


def test_collect_with_a_missing_secret_is_a_config_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["collect", "--once", "--config", str(_config(tmp_path))])
    assert rc == 2 and "tenants[0].client_secret_file" in capsys.readouterr().err


def test_secret_the_service_user_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file exists but belongs to another user, mode 0600: what a bind-mounted root-owned secret
    is to the container's non-root user. As root (who reads any file) the check runs with the
    effective uid of `nobody`, as the service would."""
    cfg_path = _config(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("not-a-real-secret")
    secret.chmod(0o600)
    if os.geteuid() != 0:
        secret.chmod(0o000)
        rc, err = _check(cfg_path, capsys)
        assert rc == 2
    else:
        from agent import config, preflight

        cfg = config.load(cfg_path)
        tmp_path.chmod(0o755)
        os.seteuid(65534)
        try:
            err = "\n".join(preflight.problems(cfg))
        finally:
            os.seteuid(0)
    assert "tenants[0].client_secret_file" in err and "is not readable by this user" in err
