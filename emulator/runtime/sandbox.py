"""`agent emulator exec -- COMMAND...`: run any program against the emulator standing in for
Microsoft's real host names, without touching the rest of the machine.

How (Linux, util-linux `unshare`):

1. `unshare --mount --propagation private --net` (plus `--user --map-root-user` when not root)
   re-runs this module inside new namespaces. Nothing done there is seen outside, and everything
   vanishes with the last process.
2. Inside, loopback is brought up and `agent emulator --impersonate --port 443` is started: in a
   private network namespace port 443 is always free and ours, and the program under test cannot
   reach the real Microsoft even for a host name we do not map (DNS fails instead).
3. A private hosts file (the machine's, plus the impersonated names -> 127.0.0.1) is bind-mounted
   over /etc/hosts, and a private CA bundle (the system bundle plus the emulator CA) over the
   system bundle paths that exist; SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and
   NODE_EXTRA_CA_CERTS point at it. The files on disk are never written.
4. COMMAND runs with the emulator's credentials in its environment (EMULATOR_* and AZURE_TENANT_ID,
   AZURE_CLIENT_ID, AZURE_CLIENT_SECRET); proxy variables are dropped. Its exit code is returned.

`--host-network` skips the network namespace (the program can then reach other local services,
e.g. a SIEM it forwards to), at the price of needing a free port 443 on the machine's loopback
(or `--port`, which only works for programs whose base URLs can carry a port).

Exit code: COMMAND's; 2 when the sandbox cannot be made (no unshare, no privileges) or the
emulator does not start.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from emulator.microsoft import clouds

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # Alpine, macOS-style
)
CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
EXIT_SETUP = 2


class SandboxError(Exception):
    """The sandbox could not be made; the message says why and what to do."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent emulator exec",
        description="Run COMMAND against the emulator impersonating Microsoft's host names, in a private "
        "mount (and network) namespace: own /etc/hosts, own CA bundle, nothing changed on the machine.",
        usage="agent emulator exec --scenario FILE [options] -- COMMAND [ARGS...]",
    )
    p.add_argument("--scenario", required=True, type=Path, help="scenario TOML (reference: docs/scenario.md)")
    p.add_argument("--truth", type=Path, help="write the NDJSON ground truth here")
    p.add_argument("--state-dir", type=Path, help="keys and logs (default: a new temp dir, kept and printed)")
    p.add_argument("--fault-log", type=Path, help="default STATE_DIR/faults.ndjson")
    p.add_argument("--request-log", type=Path, help="default STATE_DIR/requests.ndjson")
    p.add_argument("--start-instant", help="RFC 3339 instant for relative scenario times (default: now)")
    p.add_argument("--cloud", action="append", choices=tuple(clouds.CLOUDS), help="repeatable; default global")
    p.add_argument("--port", type=int, default=443, help="emulator port (default 443)")
    p.add_argument(
        "--host-network",
        action="store_true",
        help="share the machine's network (reach local services) instead of a private one",
    )
    p.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the emulator")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("agent emulator exec: no command given (put it after --)", file=sys.stderr)
        return EXIT_SETUP
    try:
        if args.inside:
            return _inside(args, command)
        _enter(argv, args.host_network)
    except SandboxError as exc:
        print(f"agent emulator exec: {exc}", file=sys.stderr)
        return EXIT_SETUP
    return EXIT_SETUP  # not reached: _enter execs


def unshare_flags(host_network: bool) -> list[str]:
    flags = ["--mount", "--propagation", "private"]
    if not host_network:
        flags.append("--net")
    if os.geteuid() != 0:
        flags += ["--user", "--map-root-user"]
    return flags


def _enter(argv: list[str], host_network: bool) -> None:
    """Check that the namespaces can be made, then replace this process with the inner stage."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SandboxError("`unshare` (util-linux) is not installed; it makes the private namespaces.")
    if sys.platform != "linux":
        raise SandboxError("private mount namespaces need Linux.")
    flags = unshare_flags(host_network)
    probe = subprocess.run(
        [unshare, *flags, "--", sys.executable, "-c", ""], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        why = probe.stderr.strip() or f"exit {probe.returncode}"
        raise SandboxError(
            f"cannot run in a private mount namespace ({why}). Run as root, or enable unprivileged "
            "user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces) "
            "with a Python the mapped user may execute."
        )
    inner = [sys.executable, "-m", "emulator", "exec", "--inside", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(unshare, [unshare, *flags, "--", *inner])  # noqa: S606 - our own argv, no shell


# -- inside the namespaces --------------------------------------------------------------------------


def loopback_up() -> None:
    """`ip link set lo up`, by ioctl (no iproute2 needed)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, ifr))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def hosts_text(original: str, names: list[str]) -> str:
    """The machine's hosts file with the impersonated names mapped to loopback appended."""
    lines = [original.rstrip("\n"), "", "# agent emulator exec: Microsoft host names -> the emulator"]
    lines += [f"127.0.0.1\t{name}" for name in names]
    return "\n".join(lines).lstrip("\n") + "\n"


def bundle_paths() -> list[Path]:
    """The system CA bundle files that exist (real paths, each once)."""
    seen: list[Path] = []
    for p in SYSTEM_BUNDLES:
        real = Path(os.path.realpath(p))
        if real.is_file() and real not in seen:
            seen.append(real)
    return seen


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise SandboxError(f"`{name}` (util-linux) is not installed.")
    return path


def _bind(source: Path, target: Path) -> None:
    done = subprocess.run(
        [_tool("mount"), "--bind", str(source), str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SandboxError(f"cannot bind-mount {source} over {target}: {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    subprocess.run([_tool("umount"), str(target)], capture_output=True, check=False)


def _read_first_line(proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or (proc.poll() is not None and not buf):
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise SandboxError(f"the emulator did not start (exit {proc.poll()}, log {log_path}):\n{tail}".rstrip())
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                proc.wait(5)
                continue
            buf += chunk
    return dict(orjson.loads(buf.split(b"\n", 1)[0]))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def _emulator(args: argparse.Namespace, state_dir: Path) -> Iterator[dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "emulator",
        "--impersonate",
        "--port",
        str(args.port),
        "--scenario",
        str(args.scenario),
        "--state-dir",
        str(state_dir),
        "--log-level",
        args.log_level,
    ]
    for flag, value in (
        ("--truth", args.truth),
        ("--fault-log", args.fault_log),
        ("--request-log", args.request_log),
        ("--start-instant", args.start_instant),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    for cloud in args.cloud or ():
        cmd += ["--cloud", cloud]
    log_path = state_dir / "emulator.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        # Its own session: a Ctrl-C at the terminal reaches COMMAND, and the emulator outlives it.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        yield _read_first_line(proc, args.startup_timeout, log_path)
    finally:
        _stop(proc)


def _environment(info: dict[str, Any], bundle: Path, info_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update({name: str(bundle) for name in CA_VARIABLES})
    env.update(
        {
            "EMULATOR_INFO": str(info_path.resolve()),
            "EMULATOR_CA_FILE": str(Path(info["ca_file"]).resolve()),
            "EMULATOR_TENANT_ID": str(info["tenant_id"]),
            "EMULATOR_CLIENT_ID": str(info["client_id"]),
            "EMULATOR_CLIENT_SECRET": str(info["client_secret"]),
            "AZURE_TENANT_ID": str(info["tenant_id"]),
            "AZURE_CLIENT_ID": str(info["client_id"]),
            "AZURE_CLIENT_SECRET": str(info["client_secret"]),
        }
    )
    return env


def _run(command: list[str], env: dict[str, str]) -> int:
    """Run COMMAND, passing SIGTERM/SIGHUP on; SIGINT from the terminal reaches it directly."""
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"agent emulator exec: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = child.wait()
    return code if code >= 0 else 128 - code


def _inside(args: argparse.Namespace, command: list[str]) -> int:
    if not args.host_network:
        loopback_up()
    # Absolute: the emulator's CA file and EMULATOR_INFO hang off it, and COMMAND may change directory.
    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="emulator-"))).resolve()
    work = Path(tempfile.mkdtemp(prefix="emulator-exec-"))
    work.chmod(0o755)  # a program that drops to another user still reads the bundle it is pointed at
    mounted: list[Path] = []
    try:
        with _emulator(args, state_dir) as info:
            names = list(info.get("impersonated", {}))
            info_path = state_dir / "emulator.json"
            info_path.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
            hosts = work / "hosts"
            hosts.write_text(hosts_text(Path("/etc/hosts").read_text(errors="replace"), names))
            ca = Path(info["ca_file"]).read_bytes()
            systems = bundle_paths()
            base = systems[0].read_bytes() if systems else b""
            bundle = work / "ca-bundle.pem"
            bundle.write_bytes(base.rstrip(b"\n") + b"\n" + ca if base else ca)
            bundle.chmod(0o644)
            hosts.chmod(0o644)
            for source, target in [(hosts, Path(os.path.realpath("/etc/hosts")))] + [(bundle, s) for s in systems]:
                _bind(source, target)
                mounted.append(target)
            print(
                f"agent emulator exec: {', '.join(names)} -> emulator on 127.0.0.1:{args.port}"
                f"{'' if args.host_network else ' (private network)'}; truth/fault/request logs in {state_dir}",
                file=sys.stderr,
            )
            code = _run(command, _environment(info, bundle, info_path))
    finally:
        for target in reversed(mounted):
            _unmount(target)
        shutil.rmtree(work, ignore_errors=True)
    return code
