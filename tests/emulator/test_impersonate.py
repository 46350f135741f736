"""`agent emulator exec` + `agent audit-collector`: an independent client (plain requests and curl,
see collector_client.py) runs against the real Microsoft host names inside a private namespace, and
the audit reports exactly what it skipped, duplicated and invented, and which losses faults caused.
The machine's hosts file and CA bundle are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.runtime.sandbox import bundle_paths, unshare_flags

REPO = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("collector_client.py")
TENANT = "5a5a5a5a-1111-4222-8333-444444444444"
SCENARIO = f"""
seed = 77
start = "-20h"
end = "-3h"
[tenant]
id = "{TENANT}"
license = "p2"
[auth]
client_id = "6b6b6b6b-1111-4222-8333-444444444444"
client_secret = "emulator-secret"
[streams."graph.signins.interactive"]
records = 230
[streams."graph.signins.noninteractive"]
records = 170
[streams."graph.directory_audits"]
records = 20
[streams."o365.exchange"]
records = 300
[streams."o365.sharepoint"]
records = 40
[management]
page_size = 7
blob_records = 10
content_delay = ["1m", "10m"]
straggler_fraction = 0.0
"""


def _namespaces_unavailable() -> str | None:
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return "needs Linux with util-linux unshare"
    probe = subprocess.run(["unshare", *unshare_flags(False), "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create private namespaces here: {probe.stderr.strip()}"
    return None


needs_namespaces = pytest.mark.skipif(_namespaces_unavailable() is not None, reason=str(_namespaces_unavailable()))


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


def _fingerprint() -> dict[str, str]:
    paths = [Path("/etc/hosts"), *bundle_paths()]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _agent(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=_env(), cwd=REPO, timeout=timeout
    )


def _truth(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@needs_namespaces
@pytest.mark.parametrize("faults", ["", "[faults]\nserver_error = 0.2\n"], ids=["clean", "server-errors"])
def test_independent_client_audited(tmp_path: Path, faults: str) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO + faults)
    state, truth_path = tmp_path / "state", tmp_path / "truth.ndjson"
    records, plan_path = tmp_path / "records.ndjson", tmp_path / "plan.json"
    before = _fingerprint()

    run = _agent(
        "emulator", "exec", "--scenario", str(scenario), "--state-dir", str(state), "--truth", str(truth_path),
        "--", sys.executable, str(CLIENT), str(records), str(plan_path),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr + (state / "emulator.log").read_text(errors="replace")
    assert _fingerprint() == before  # the machine's hosts file and trust store are untouched

    plan = json.loads(plan_path.read_text())
    links = plan["links"]
    assert any(u.startswith("https://graph.microsoft.com/beta/auditLogs/signIns?") for u in links)
    feed = f"https://manage.office.com/api/{{}}/{TENANT}/activity/feed/"
    assert any(u.startswith(feed.format("v1") + "subscriptions/content?") for u in links)  # NextPageUri
    assert any(u.startswith(feed.format("v1.0") + "audit/") for u in links)  # contentUri

    truth = _truth(truth_path)
    by_blob: dict[str, set[str]] = {}
    for row in truth:
        if row.get("content_id"):
            by_blob.setdefault(row["content_id"], set()).add(row["id"])
    skipped = set(plan["skipped_ids"]) | {i for b in plan["skipped_blobs"] for i in by_blob[b]}
    failed = {i for b in plan["failed_blobs"] for i in by_blob[b]}
    if faults:
        assert failed, "the seeded faults were meant to cost the client some blobs"
    else:
        assert not failed

    audit = _agent(
        "audit-collector", "--truth", str(truth_path), "--records", str(records), "--format", "json",
        "--fault-log", str(state / "faults.ndjson"), "--requests", str(state / "requests.ndjson"),
    )  # fmt: skip
    assert audit.returncode == 3, audit.stderr
    report = json.loads(audit.stdout)
    streams = report["streams"]
    # directoryAudits was read (one page) but never written: the request log makes it count as missed
    assert set(streams) == {
        "graph.signins.interactive", "graph.signins.noninteractive", "graph.directory_audits", "o365.exchange"
    }  # fmt: skip
    assert report["counted_because_asked"] == ["graph.directory_audits"]
    assert set(report["not_collected"]) == {"o365.sharepoint"}  # never asked for
    audits = {r["id"].lower() for r in truth if r["stream"] == "graph.directory_audits"}
    missed = {m["id"] for m in report["missed"]}
    assert missed == skipped | failed | audits
    explained = {m["id"] for m in report["missed"] if m["faults"]}
    assert explained == failed  # deliberate skips are the collector's own doing; failed blobs are the faults'
    assert {i: n for s in streams.values() for i, n in s["duplicated_ids"].items()} == {plan["duplicated_id"]: 2}
    assert report["invented"]["ids"] == [plan["invented_id"]]
    for s in streams.values():
        assert s["not_yet_visible"] == 0 and s["unavailable_at_source"] == 0
        assert s["expected"] == s["collected"] + s["missed"]
    faulted = {f["content_id"] for f in report["faults"]["explaining_losses"]}
    assert faulted == set(plan["failed_blobs"])
    if faults:
        assert report["faults"]["recovered"] > 0  # the retried listings
    (client,) = [c for c in report["clients"] if c["client"] == "independent-test-collector/1.0"]
    assert client["requests"] > 0 and client["hosts"]["graph.microsoft.com"] > 0
    assert client["hosts"]["manage.office.com"] > 0 and client["hosts"]["login.microsoftonline.com"] == 4

    text = _agent("audit-collector", "--truth", str(truth_path), "--records", str(records))
    assert text.returncode == 3
    assert "LOSSES FOUND" in text.stdout and "not collected at all: o365.sharepoint" in text.stdout
    assert "DUPLICATES FOUND: 1 id written" in text.stdout and "INVENTED RECORDS: 1 id not" in text.stdout
    assert "pass --requests" in text.stdout  # without the request log it says what it cannot count


@needs_namespaces
def test_exec_paths_are_absolute_with_a_relative_state_dir(tmp_path: Path) -> None:
    """A collector that changes directory still finds EMULATOR_INFO and EMULATOR_CA_FILE."""
    (tmp_path / "scenario.toml").write_text(SCENARIO)
    script = (
        "import os, json\n"
        "info, ca = os.environ['EMULATOR_INFO'], os.environ['EMULATOR_CA_FILE']\n"
        "assert os.path.isabs(info) and os.path.isabs(ca), (info, ca)\n"
        "os.chdir('/')\n"
        "assert json.load(open(info))['ca_file'] == ca\n"
        "assert 'BEGIN CERTIFICATE' in open(ca).read()\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "agent", "emulator", "exec", "--scenario", "scenario.toml", "--state-dir", "state",
         "--", sys.executable, "-c", script],
        capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr


@needs_namespaces
def test_exec_returns_the_command_exit_code_and_keeps_the_network_private(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    before = _fingerprint()
    script = (
        "import socket, sys, os\n"
        "assert socket.gethostbyname('login.windows.net') == '127.0.0.1'\n"
        "assert os.environ['SSL_CERT_FILE'] == os.environ['NODE_EXTRA_CA_CERTS'] == os.environ['CURL_CA_BUNDLE']\n"
        "ca = open(os.environ['EMULATOR_CA_FILE']).read()\n"
        "assert ca in open(os.environ['REQUESTS_CA_BUNDLE']).read()\n"
        "assert ca in open('/etc/ssl/certs/ca-certificates.crt').read() or not os.path.exists('/etc/ssl/certs')\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 443), timeout=2)\n"
        "except OSError:\n"
        "    pass\n"
        "else:\n"
        "    sys.exit(9)\n"
        "sys.exit(7)\n"
    )
    run = _agent(
        "emulator", "exec", "--scenario", str(scenario), "--state-dir", str(tmp_path / "state"),
        "--", sys.executable, "-c", script,
    )  # fmt: skip
    assert run.returncode == 7, run.stderr
    assert _fingerprint() == before


def test_exec_without_unshare_is_a_clear_usage_error(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    env = dict(_env(), PATH=str(tmp_path))  # no unshare on PATH
    run = subprocess.run(
        [sys.executable, "-m", "agent", "emulator", "exec", "--scenario", str(scenario), "--", "true"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "unshare" in run.stderr and "not installed" in run.stderr


def test_exec_as_an_unprivileged_user_works_or_says_why(tmp_path: Path) -> None:
    """Not root: user namespaces stand in for root where the kernel allows them, else exit 2 with the reason."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("needs root (to drop to nobody) and setpriv")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    tmp_path.chmod(0o777)
    scenario.chmod(0o644)
    for parent in tmp_path.parents:
        if not os.access(parent, os.X_OK):
            pytest.skip("temp dir not reachable by nobody")
    run = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         sys.executable, "-m", "agent", "emulator", "exec", "--scenario", str(scenario),
         "--state-dir", str(tmp_path / "state"), "--", sys.executable, "-c", "print('inside')"],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300,
    )  # fmt: skip
    if run.returncode == 2:
        assert "private mount namespace" in run.stderr, run.stderr
    else:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "inside"
