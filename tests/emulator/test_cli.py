"""The command line: first line, --write-config (read back with the agent's own parser), bad
scenarios, several tenants, and serving corpus records verbatim."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from agent import config as agent_config
from tests.emulator.helpers import MANAGEMENT_SCOPE, bearer, graph_all, token
from tests.emulator_fixture import REPO, running_emulator

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"  # shared/ sits beside the repository
CONTRACT_6_KEYS = {"ca_file", "tenant_id", "client_id", "client_secret", "login", "graph", "management"}

TWO_TENANTS = """
seed = 4
[[tenants]]
id = "66666666-6666-4666-8666-666666666666"
license = "p1"
[[tenants]]
id = "77777777-7777-4777-8777-777777777777"
[tenants.streams."o365.exchange"]
records = 5
[streams."graph.directory_audits"]
records = 30
[quota]
graph_requests_per_10s = 0
"""


def test_first_line_and_written_config(tmp_path: Path) -> None:
    cfg = tmp_path / "out" / "agent.toml"
    args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"))
    with running_emulator(TWO_TENANTS, tmp_path, extra_args=args) as emu:
        assert emu.info.keys() >= CONTRACT_6_KEYS
        assert {"client_certificate", "client_key", "client_pfx", "tenants"} <= emu.info.keys()
        for key in ("login", "graph", "management"):
            assert emu[key].startswith("https://127.0.0.1:")
        assert len({emu["login"], emu["graph"], emu["management"]}) == 3
        secret = cfg.parent / "client_secret"
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
        assert emu["client_secret"] not in cfg.read_text()
        parsed = agent_config.load(cfg)
        assert [t.id for t in parsed.tenants] == emu["tenants"]
        first, second = parsed.tenants
        assert first.streams == ("graph.directory_audits",) and second.streams == ("o365.exchange",)
        assert (
            first.credential.secret is not None and first.credential.secret.reveal() == emu["client_secret"]
        )
        assert first.endpoints.graph == emu["graph"] and first.endpoints.management == emu["management"]
        assert parsed.http.ca_file == Path(emu["ca_file"])
        assert parsed.collection.management_requests_per_minute == 2000
        # each tenant sees only its own data
        other = emu["tenants"][1]
        tok = token(emu, MANAGEMENT_SCOPE, tenant=other)
        r = emu.session().get(
            f"{emu['management']}/api/v1.0/{other}/activity/feed/subscriptions/list", headers=bearer(tok)
        )
        assert [i["contentType"] for i in r.json()] == ["Audit.Exchange"]
        items, _ = graph_all(emu.session(), f"{emu['graph']}/v1.0/auditLogs/directoryAudits", token(emu))
        assert {i["id"] for i in items} == {t["id"] for t in emu.truth() if t["tenant"] == emu["tenant_id"]}


def test_certificate_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(
        TWO_TENANTS, tmp_path, extra_args=("--write-config", str(cfg), "--auth", "certificate")
    ):
        parsed = agent_config.load(cfg)
        cred = parsed.tenants[0].credential
        assert cred.certificate_file is not None and cred.private_key_file is not None
        assert cred.secret is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tenant]\nmystery = 1\n", "unknown key in [tenant]: mystery"),
        ("not toml = = 1", "is not valid TOML"),
    ],
)
def test_bad_scenario_exits_2_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "--scenario",
            str(path),
            "--state-dir",
            str(tmp_path / "st"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr


def _corpus_records(path: Path, id_field: str) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for line in path.read_bytes().splitlines():
        rec = orjson.loads(line)
        out.setdefault(rec[id_field], rec)
    return out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
def test_corpus_records_served_parsed_equal(tmp_path: Path) -> None:
    audits = CORPUS / "graph/directory_audits/graph_docs_directory_audits.ndjson"
    mgmt = CORPUS / "management_activity/otrf_m365_atomic/o365spray_default.ndjson"
    scenario = f"""
[tenant]
[streams."graph.directory_audits"]
corpus = "{audits}"
corpus_times = "keep"
[streams."o365.azure_active_directory"]
corpus = "{mgmt}"
[management]
content_delay = ["1m", "2m"]
[quota]
graph_requests_per_10s = 0
"""
    with running_emulator(scenario, tmp_path) as emu:
        items, _ = graph_all(emu.session(), f"{emu['graph']}/v1.0/auditLogs/directoryAudits", token(emu))
        assert {i["id"]: i for i in items} == _corpus_records(audits, "id")  # verbatim, old times kept
        expected = _corpus_records(mgmt, "Id")
        truth = [t for t in emu.truth() if t["stream"] == "o365.azure_active_directory"]
        assert {t["id"] for t in truth} == set(expected)
        tok = token(emu, MANAGEMENT_SCOPE)
        root = f"{emu['management']}/api/v1.0/{emu['tenant_id']}/activity/feed"
        served = {}
        for cid in {t["content_id"] for t in truth}:
            for rec in emu.session().get(f"{root}/audit/{cid}", headers=bearer(tok)).json():
                served[rec["Id"]] = rec
        for rid, rec in served.items():  # rebased: only CreationTime moved into the span
            assert {k: v for k, v in rec.items() if k != "CreationTime"} == {
                k: v for k, v in expected[rid].items() if k != "CreationTime"
            }
        assert set(served) == set(expected)


def test_same_scenario_and_start_instant_give_the_same_truth(tmp_path: Path) -> None:
    scenario = """
seed = 12
[tenant]
[streams."graph.signins.managedidentity"]
records = 40
duplicate_fraction = 0.1
late_fraction = 0.1
[streams."o365.dlp_all"]
records = 40
[[siem.gaps]]
start = "-20h"
end = "-10h"
drop_fraction = 0.5
"""
    args = ("--start-instant", "2026-11-01T00:00:00Z")
    with running_emulator(scenario, tmp_path / "a", extra_args=args) as a:
        first = a.truth_path.read_bytes()
    with running_emulator(scenario, tmp_path / "b", extra_args=args) as b:
        second = b.truth_path.read_bytes()
    assert first == second
    rows = [orjson.loads(line) for line in first.splitlines()]
    assert any(not r["in_siem"] for r in rows) and any(r["in_siem"] for r in rows)
