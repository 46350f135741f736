"""`agent emulator`: parse options, build the scenario's world, listen, print the first line, serve.

The first stdout line is JSON (docs/emulator.md) so a caller can wait for it; everything else goes to
stderr. Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad scenario or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from emulator.microsoft import clouds
from emulator.runtime import agentconfig
from emulator.runtime.server import (
    FIRST_LINE_EXTRAS,
    Options,
    build_state,
    listen,
    listen_impersonating,
    stop_on_signal,
)
from emulator.world import truth
from emulator.world.clock import parse_iso
from emulator.world.scenario import ScenarioError
from emulator.world.state import State

log = logging.getLogger("emulator")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="agent emulator", description="Emulate Microsoft's log APIs on loopback."
    )
    p.add_argument("--scenario", required=True, type=Path, help="scenario TOML (reference: docs/scenario.md)")
    p.add_argument("--truth", type=Path, help="write the NDJSON ground truth here")
    p.add_argument("--write-config", type=Path, help="write an agent config pointing at this emulator")
    p.add_argument("--store-dir", type=Path, help="the local store path for --write-config")
    p.add_argument("--siem", choices=("sentinel", "splunk", "elastic"), default="sentinel")
    p.add_argument("--state-dir", type=Path, help="where keys and logs go (default: a new temp dir)")
    p.add_argument(
        "--fault-log", type=Path, help="NDJSON log of injected faults (default: STATE_DIR/faults.ndjson)"
    )
    p.add_argument(
        "--auth",
        choices=("secret", "certificate"),
        default="secret",
        help="credential the written config uses",
    )
    p.add_argument(
        "--start-instant",
        help="RFC 3339 instant to resolve relative scenario times against "
        "(default: now); for byte-identical data across runs",
    )
    p.add_argument(
        "--request-log",
        type=Path,
        help="NDJSON log of every login/Graph/Management request per client (default: STATE_DIR/requests.ndjson)",
    )
    p.add_argument(
        "--impersonate",
        action="store_true",
        help="one HTTPS listener answering for login.microsoftonline.com, graph.microsoft.com and "
        "manage.office.com (see --cloud); the certificate carries those names",
    )
    p.add_argument(
        "--cloud",
        action="append",
        choices=tuple(clouds.CLOUDS),
        help="with --impersonate: whose host names to answer for (repeatable; default global)",
    )
    p.add_argument(
        "--port",
        type=int,
        help="with --impersonate: the port (default 443, or an ephemeral port where 443 cannot be bound)",
    )
    p.add_argument("--config", type=Path, help=argparse.SUPPRESS)  # every agent command accepts --config
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def first_line(state: State) -> dict[str, Any]:
    """Contract 6 keys for the built services, plus the client certificate paths and every tenant."""
    scn, m = state.scenario, state.material
    line: dict[str, Any] = {
        "ca_file": str(m.ca_file),
        "tenant_id": scn.tenants[0].id,
        "client_id": scn.auth.client_id,
        "client_secret": scn.auth.client_secret,
    }
    line.update(state.urls)
    for extra in FIRST_LINE_EXTRAS.values():
        line.update(extra(state))
    line.update(
        {
            "client_certificate": str(m.client_cert),
            "client_key": str(m.client_key),
            "client_pfx": str(m.client_pfx),
            "client_thumbprint": m.thumbprint_hex,
            "tenants": [t.id for t in scn.tenants],
            "state_dir": str(m.ca_file.parent),
        }
    )
    if state.requests is not None:
        line["request_log"] = str(state.requests.path)
    if state.impersonated:
        line["impersonated"] = dict(state.impersonated)  # host name -> service
    return line


async def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="emulator-"))
    origin = parse_iso(args.start_instant, need_zone=True) if args.start_instant else None
    state = build_state(
        Options(
            scenario=args.scenario,
            state_dir=state_dir,
            fault_log=args.fault_log,
            origin=origin,
            impersonate=tuple(args.cloud or ("global",)) if args.impersonate else (),
            request_log=args.request_log,
        )
    )
    if args.truth:
        truth.write(state.dataset, args.truth)
    stop = stop_on_signal()
    if args.impersonate:
        runners = await listen_impersonating(state, tuple(args.cloud or ("global",)), args.port)
    else:
        runners = await listen(state, {})
    try:
        if args.write_config:
            store = args.store_dir or args.write_config.parent / "store"
            if not agentconfig.write(state, args.write_config, store, args.auth, args.siem):
                log.warning("No [siem] table written: the %s emulator is not built yet.", args.siem)
        sys.stdout.buffer.write(orjson.dumps(first_line(state)) + b"\n")
        sys.stdout.flush()
        log.info("Emulator ready.", extra={"urls": state.urls})
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        state.faults.close()
        if state.requests is not None:
            state.requests.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["exec"]:
        from emulator.runtime import sandbox

        return sandbox.main(argv[1:])
    args = parser().parse_args(argv)
    if (args.cloud or args.port is not None) and not args.impersonate:
        print("agent emulator: --cloud and --port need --impersonate", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(run(args))
    except ScenarioError as exc:
        print(f"agent emulator: scenario error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"agent emulator: {exc}", file=sys.stderr)
        return 2
