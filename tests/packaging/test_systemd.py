"""The shipped systemd unit: clean `systemd-analyze verify`, exposure <= 2.0, the settings the
deployment docs promise, and a Python that really runs under MemoryDenyWriteExecute."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "ms-log-agent.service"
ENV_EXAMPLE = ROOT / "systemd" / "ms-log-agent.env.example"
EXAMPLE_CONFIG = ROOT / "packaging" / "agent.example.toml"
INSTALLED_AGENT = "/opt/ms-log-agent/bin/agent"
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run does it)")


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order; enough of the unit-file syntax for this unit."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


@pytest.fixture(scope="module")
def settings() -> dict[tuple[str, str], list[str]]:
    return unit_settings(UNIT.read_text())


@pytest.fixture
def testable_unit(tmp_path: Path) -> Path:
    """The unit with its binary path pointing at an executable that exists here, arguments kept:
    `verify` fails (rc 1) on a missing ExecStart path, and /opt/ms-log-agent is not installed."""
    agent = Path(sys.executable).with_name("agent")
    exe = str(agent) if agent.exists() else shutil.which("true")
    assert exe, "need the venv's agent script or true(1)"
    text = UNIT.read_text()
    assert text.count(INSTALLED_AGENT) == 2, "ExecStartPre and ExecStart both run the installed agent"
    path = tmp_path / UNIT.name
    path.write_text(text.replace(INSTALLED_AGENT, exe))
    return path


@needs_systemd_analyze
def test_unit_verifies_without_any_output(testable_unit: Path) -> None:
    # verify exits 0 on unknown keys and bad values and only prints them, so any output fails.
    proc = subprocess.run(["systemd-analyze", "verify", testable_unit.name], cwd=testable_unit.parent,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""


@needs_systemd_analyze
def test_unit_exposure_is_at_most_two(testable_unit: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", testable_unit.name],
                          cwd=testable_unit.parent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, proc.stdout


@pytest.mark.parametrize(("key", "value"), [
    ("Type", "notify"), ("NotifyAccess", "main"), ("Restart", "on-failure"), ("DynamicUser", "yes"),
    ("StateDirectory", "ms-log-agent"), ("ConfigurationDirectory", "ms-log-agent"), ("UMask", "0077"),
    ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
    ("NoNewPrivileges", "yes"), ("SystemCallArchitectures", "native"), ("CapabilityBoundingSet", ""),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"), ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"), ("RestrictNamespaces", "yes"), ("RestrictRealtime", "yes"),
    ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
    ("ProtectClock", "yes"), ("ProtectHostname", "yes"), ("ProtectProc", "invisible"), ("ProcSubset", "pid"),
])
def test_unit_has_the_documented_hardening(settings: dict[tuple[str, str], list[str]], key: str,
                                           value: str) -> None:
    # systemd-analyze scores some of these lightly; this keeps each one from being dropped quietly.
    assert settings.get(("Service", key)) == [value]


def test_unit_runs_check_then_run_with_the_same_config(settings: dict[tuple[str, str], list[str]]) -> None:
    conf = "--config /etc/ms-log-agent/agent.toml"
    assert settings[("Service", "ExecStartPre")] == [f"{INSTALLED_AGENT} check {conf}"]
    assert settings[("Service", "ExecStart")] == [f"{INSTALLED_AGENT} run {conf} $AGENT_RUN_ARGS"]
    assert settings[("Service", "SystemCallFilter")] == ["@system-service", "~@privileged @resources"]
    assert ("Service", "IPAddressDeny") not in settings  # would break outbound HTTPS; see the comment
    assert settings[("Unit", "StartLimitIntervalSec")] == ["0"]


def _seconds(value: str) -> float:
    units = {"s": 1, "min": 60}
    m = re.fullmatch(r"(\d+)(s|min)", value)
    assert m, value
    return int(m.group(1)) * units[m.group(2)]


def test_unit_timeouts_leave_room_for_graceful_stop(settings: dict[tuple[str, str], list[str]]) -> None:
    # `agent run` promises to stop within 30 s of SIGTERM; the watchdog must exceed the agent's
    # longest legitimate pause between pings (it pings every WATCHDOG_USEC/2 from the loop).
    assert _seconds(settings[("Service", "TimeoutStopSec")][0]) >= 30 + 10
    assert _seconds(settings[("Service", "WatchdogSec")][0]) >= 30


def test_every_credential_the_example_config_uses_is_loaded_by_the_unit(
        settings: dict[tuple[str, str], list[str]]) -> None:
    loaded = {v.split(":", 1)[0] for v in settings[("Service", "LoadCredential")]}
    used = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)", EXAMPLE_CONFIG.read_text()))
    second_tenant = {"fabrikam-secret"}  # the example's second tenant: a drop-in adds it (documented)
    assert used - second_tenant <= loaded
    for value in settings[("Service", "LoadCredential")]:
        ident, _, store_name = value.partition(":")
        assert store_name == f"ms-log-agent.{ident}", "credstore names are prefixed with the service"


def test_env_example_documents_every_variable_the_unit_expands() -> None:
    expanded = set(re.findall(r"\$\{?([A-Z_]+)\}?", "\n".join(
        line for line in UNIT.read_text().splitlines() if line.startswith("Exec"))))
    documented = set(re.findall(r"^#?([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M))
    assert expanded and expanded <= documented


# The workload below touches every native code path the agent uses (TLS, aiohttp's C parser,
# cryptography signing and PKCS#12, zstd, orjson, the CLI's `check`) after PR_SET_MDWE, the
# kernel's own form of MemoryDenyWriteExecute: a writable+executable mapping then fails.
MDWE_WORKLOAD = textwrap.dedent("""
    import ctypes, mmap, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit(77)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError:
        pass
    else:
        sys.exit(78)

    import asyncio, datetime, ssl
    import aiohttp, boto3, jwt, orjson, prometheus_client, trustme, zstandard
    from aiohttp import web
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from agent import auth, checkpoint, collect, config, http, logs
    from agent.archive import archive
    from agent.cli import main as cli
    from agent.archive import codec
    from agent.archive import layout

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    token = jwt.encode({"aud": "x", "iss": "y"}, pem, algorithm="RS256", headers={"x5t": "abc"})
    assert jwt.decode(token, key.public_key(), algorithms=["RS256"], audience="x")["iss"] == "y"
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    blob = pkcs12.serialize_key_and_certificates(b"a", key, None, None, serialization.BestAvailableEncryption(b"pw"))
    assert pkcs12.load_key_and_certificates(blob, b"pw")[0] is not None
    data = orjson.dumps([{"id": str(i), "n": i} for i in range(2000)])
    assert zstandard.ZstdDecompressor().decompress(zstandard.ZstdCompressor(level=9).compress(data)) == data

    async def tls_round_trip():
        app = web.Application()
        app.router.add_get("/", lambda r: web.json_response({"ok": True}))
        runner = web.AppRunner(app)
        await runner.setup()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(server_ctx)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        port = runner.addresses[0][1]
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/", ssl=client_ctx) as r:
            assert (await r.json())["ok"] is True
        await runner.cleanup()

    asyncio.run(tls_round_trip())
    prometheus_client.generate_latest()
    boto3.session.Session().client("s3", region_name="us-east-1", aws_access_key_id="a",
                                   aws_secret_access_key="b")
    sys.exit(cli.main(["check", "--config", sys.argv[1]]))
""")


def test_python_and_the_agent_run_under_memory_deny_write_execute(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not-a-secret\n")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(textwrap.dedent("""
        [[tenants]]
        id = "00000000-0000-0000-0000-000000000001"
        client_id = "00000000-0000-0000-0000-000000000002"
        client_secret_file = "secret"
        [store]
        type = "local"
        path = "archive"
    """))
    script = tmp_path / "mdwe.py"
    script.write_text(MDWE_WORKLOAD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script), str(cfg)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    if proc.returncode == 77:
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3): cannot emulate MemoryDenyWriteExecute")
    assert proc.returncode != 78, "PR_SET_MDWE was accepted but a W+X mapping still succeeded"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "config ok" in proc.stdout
