"""`--write-config FILE`: an agent config (the agent's own TOML format) pointing at this emulator.

The client secret goes to a file beside the config (mode 0600), never into the config itself.
SIEM tables come from `SIEM_TABLES`, which the SIEM emulators fill in (see the hook below).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.world.state import State


def _in_doubt_wait(state: State) -> dict[str, str]:
    """`backfill_in_doubt_wait` matching the scenario's `[siem] ingest_latency`: a batch whose answer
    was lost is looked up only once what it wrote can show (at once when the latency is 0)."""
    assert state.siem is not None
    latency = state.siem.plan.ingest_latency
    return {"backfill_in_doubt_wait": f"{-(-latency // 10_000_000) + 1}s" if latency else "0s"}


# HOOK for the SIEM emulators: map `--siem` name -> function returning the agent's [siem] table
# (keys as the agent's SIEM adapter expects them) for this running emulator. Until a SIEM is
# registered here, the written config has no [siem] table and the emulator says so on stderr.
def _sentinel(state: State, config_dir: Path) -> dict[str, Any]:
    from emulator.siems.ingestion import dcr_immutable_id

    assert state.siem is not None
    return {"type": "sentinel", "workspace_id": state.siem.workspace_id, "endpoint": state.urls["loganalytics"],
            "tenant": state.scenario.tenants[0].id, "ingestion_endpoint": state.urls["ingestion"],
            "dcr_immutable_id": dcr_immutable_id(state.scenario.seed), **_in_doubt_wait(state)}


def _splunk(state: State, config_dir: Path) -> dict[str, Any]:
    _secret_file(config_dir / "splunk_token", state.splunk_token)
    _secret_file(config_dir / "splunk_hec_token", state.splunk_hec_token)
    return {"type": "splunk", "url": state.urls["splunk"], "token_file": "splunk_token", "index": "main",
            "hec_url": state.urls["splunk_hec"], "hec_token_file": "splunk_hec_token", **_in_doubt_wait(state)}


def _elastic(state: State, config_dir: Path) -> dict[str, Any]:
    _secret_file(config_dir / "elastic_api_key", state.elastic_api_key)
    return {"type": "elastic", "url": state.urls["elastic"], "api_key_file": "elastic_api_key",
            **_in_doubt_wait(state)}


SIEM_TABLES: dict[str, Callable[[State, Path], dict[str, Any]]] = {
    "sentinel": _sentinel, "splunk": _splunk, "elastic": _elastic,
}
UNLIMITED = 1_000_000  # what the agent is told when the scenario sets a quota to 0 (unlimited)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def _table(name: str, values: dict[str, Any]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in values.items()), ""]


def _secret_file(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value)
    os.chmod(path, 0o600)


def render(state: State, config_dir: Path, store_dir: Path, auth: str, siem: str) -> str:
    scn, m = state.scenario, state.material
    lines = ["# Written by `agent emulator --write-config`; points the agent at this emulator run.", ""]
    for tenant in scn.tenants:
        lines += ["[[tenants]]", f"id = {_value(tenant.id)}", f"client_id = {_value(scn.auth.client_id)}"]
        if auth == "certificate":
            lines += [
                f"certificate_file = {_value(m.client_cert)}",
                f"private_key_file = {_value(m.client_key)}",
            ]
        else:
            lines.append('client_secret_file = "client_secret"')
        lines += [f"streams = {_value(list(tenant.streams))}", ""]
        lines += _table("tenants.endpoints", {k: state.urls[k] for k in ("login", "graph", "management")})
    lines += _table("store", {"type": "local", "path": str(store_dir)})
    lines += _table("http", {"ca_file": str(m.ca_file)})
    q = scn.quota
    lines += _table(
        "collection",
        {
            "graph_requests_per_10s": q.graph_requests_per_10s or UNLIMITED,
            "graph_app_requests_per_10s": q.graph_app_requests_per_10s or UNLIMITED,
            "management_requests_per_minute": q.management_requests_per_minute or UNLIMITED,
        },
    )
    make = SIEM_TABLES.get(siem)
    if make is not None:
        lines += _table("siem", make(state, config_dir))
    return "\n".join(lines)


def write(state: State, path: Path, store_dir: Path, auth: str, siem: str) -> bool:
    """Write the config (and the secret file beside it); False when no [siem] table could be written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if auth == "secret":
        _secret_file(path.parent / "client_secret", state.scenario.auth.client_secret)
    path.write_text(render(state, path.parent, store_dir.resolve(), auth, siem), encoding="utf-8")
    return siem in SIEM_TABLES
