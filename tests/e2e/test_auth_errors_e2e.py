"""End-to-end: credentials (secret, certificate, PFX), refused and expiring tokens, licence 403s and
bad configs, with every byte the agent prints checked for secrets (client secret, the private
key's PEM body, any access token)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    GRAPH_STREAMS,
    JWT_RE,
    Transcript,
    assert_exact,
    assert_no_secrets,
    edit_config,
    expected_ids,
    exported_ids,
    outcomes,
    pem_body,
    run_agent,
)
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator

SMALL = """
seed = 51
start = "-2h"
end = "-10m"
[tenant]
license = "{license}"
[streams."graph.signins.interactive"]
records = 40
[streams."graph.directory_audits"]
records = 40
[auth]
token_lifetime = "{lifetime}"
[quota]
graph_requests_per_10s = {quota}
"""
STREAMS = ("graph.signins.interactive", "graph.directory_audits")


def scenario(license: str = "p2", lifetime: str = "3599s", quota: int = 0) -> str:
    return SMALL.format(license=license, lifetime=lifetime, quota=quota)


def prepare(cfg: Path, **collection: object) -> None:
    edit_config(cfg, "collection", window="30d", initial_lookback="3h", **collection)
    edit_config(cfg, "log", format="json", level="DEBUG")


def secrets_of(emu: object, tmp_path: Path) -> list[str]:
    info = emu.info  # type: ignore[attr-defined]
    out = [info["client_secret"]]
    key = info.get("client_key")
    if key:
        out.append(pem_body(Path(key).read_text()))
        out += [ln for ln in Path(key).read_text().splitlines() if ln and not ln.startswith("-----")]
    return out


def assert_clean(text: str, secrets: list[str]) -> None:
    assert_no_secrets(text, secrets)
    assert not JWT_RE.search(text), "an access token appears in the agent's output"


@pytest.mark.parametrize("credential", ["pem", "pfx"])
def test_certificate_auth_end_to_end(tmp_path: Path, credential: str) -> None:
    cfg, out = tmp_path / "agent.toml", Transcript()
    with running_emulator(scenario(), tmp_path, extra_args=(*start_args(tmp_path), "--auth", "certificate")) as emu:
        prepare(cfg)
        if credential == "pfx":
            text = re.sub(r'certificate_file = .*\n', "", cfg.read_text())
            text = re.sub(r'private_key_file = .*\n', f'pfx_file = "{emu.info["client_pfx"]}"\n', text)
            cfg.write_text(text)
        assert "client_secret" not in cfg.read_text()
        at = datetime.now(UTC)
        proc = run_agent(["collect", "--once", "--config", str(cfg)], transcript=out)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert_exact(exported_ids(cfg, STREAMS), expected_ids(emu.truth(), at, STREAMS))
        run_agent(["status", "--json", "--config", str(cfg)], transcript=out)
        assert_clean(out.text, secrets_of(emu, tmp_path))


def test_wrong_secret_names_the_aadsts_code_and_leaks_nothing(tmp_path: Path) -> None:
    cfg, out = tmp_path / "agent.toml", Transcript()
    with running_emulator(scenario(), tmp_path, extra_args=start_args(tmp_path)) as emu:
        prepare(cfg)
        wrong = "Wr0ng~" + emu.info["client_secret"][::-1]
        (tmp_path / "client_secret").write_text(wrong)
        proc = run_agent(["collect", "--once", "--config", str(cfg)], transcript=out)
        assert proc.returncode == 1
        assert re.search(r"AADSTS\d{5,}", proc.stderr), proc.stderr[-2000:]
        assert [o for o in outcomes(proc.stderr) if not o["ok"] and o["error_kind"] == "AuthError"]
        check = run_agent(["check", "--online", "--config", str(cfg)], transcript=out)
        assert check.returncode == 1 and "AADSTS" in check.stderr
        assert_clean(out.text, [*secrets_of(emu, tmp_path), wrong])


def test_token_expiring_mid_run_is_renewed(tmp_path: Path) -> None:
    """Tokens live 5 s; at 5 requests per 10 s with 10-record pages the pass lasts ~15 s."""
    cfg, out = tmp_path / "agent.toml", Transcript()
    with running_emulator(scenario(lifetime="5s", quota=5), tmp_path, extra_args=start_args(tmp_path)) as emu:
        prepare(cfg, page_size=10)
        at = datetime.now(UTC)
        t0 = datetime.now(UTC)
        proc = run_agent(["collect", "--once", "--config", str(cfg)], transcript=out)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (datetime.now(UTC) - t0).total_seconds() > 10, "the pass ended before any token expired"
        assert_exact(exported_ids(cfg, STREAMS), expected_ids(emu.truth(), at, STREAMS))
        assert_clean(out.text, secrets_of(emu, tmp_path))


def test_free_licence_fails_signins_but_collects_directory_audits(tmp_path: Path) -> None:
    cfg, out = tmp_path / "agent.toml", Transcript()
    with running_emulator(scenario(license="free"), tmp_path, extra_args=start_args(tmp_path)) as emu:
        prepare(cfg)
        at = datetime.now(UTC)
        proc = run_agent(["collect", "--once", "--config", str(cfg)], transcript=out)
        assert proc.returncode == 1
        rows = {o["stream"]: o for o in outcomes(proc.stderr)}
        signins = rows["graph.signins.interactive"]
        assert not signins["ok"] and signins["error_kind"] == "LicenseError"
        assert "licence" in signins["error"] and "P1 or P2" in signins["error"]
        assert rows["graph.directory_audits"]["ok"]
        audits = ("graph.directory_audits",)
        assert_exact(exported_ids(cfg, audits), expected_ids(emu.truth(), at, audits))
        assert exported_ids(cfg, ("graph.signins.interactive",)) == {"graph.signins.interactive": []}
        status = run_agent(["status", "--json", "--config", str(cfg)], transcript=out)
        assert status.returncode == 1 and "licence" in status.stdout
        assert_clean(out.text, secrets_of(emu, tmp_path))


@pytest.mark.parametrize(("table", "line", "named"), [
    ("collection", "windw = \"6h\"", "windw"),
    ("collection", "window = \"six hours\"", "collection.window"),
    ("collection", "management_concurrency = 0", "collection.management_concurrency"),
    ("store", "typ = \"local\"", "typ"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, table: str, line: str, named: str) -> None:
    cfg, out = tmp_path / "agent.toml", Transcript()
    with running_emulator(scenario(), tmp_path, extra_args=start_args(tmp_path)) as emu:
        text = cfg.read_text().replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1)
        cfg.write_text(text)
        for command in (["collect", "--once"], ["status"], ["export"], ["verify"]):
            proc = run_agent([*command, "--config", str(cfg)], transcript=out)
            assert proc.returncode == 2, (command, proc.stderr)
            assert named in proc.stderr, proc.stderr
        assert_clean(out.text, secrets_of(emu, tmp_path))


def test_all_graph_streams_need_no_secret_in_output(tmp_path: Path) -> None:
    """A plain secret-auth run at DEBUG: nothing secret in any line, logs included."""
    cfg, out = tmp_path / "agent.toml", Transcript()
    text = scenario().replace('[streams."graph.directory_audits"]', "".join(
        f'[streams."{s}"]\nrecords = 10\n' for s in GRAPH_STREAMS[1:]
        if s != "graph.directory_audits") + '[streams."graph.directory_audits"]')
    with running_emulator(text, tmp_path, extra_args=start_args(tmp_path)) as emu:
        prepare(cfg)
        proc = run_agent(["collect", "--once", "--config", str(cfg)], transcript=out)
        assert proc.returncode == 0, proc.stderr[-2000:]
        run_agent(["check", "--online", "--config", str(cfg)], transcript=out)
        assert_clean(out.text, secrets_of(emu, tmp_path))
