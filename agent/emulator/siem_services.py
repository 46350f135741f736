"""The emulated primary SIEMs as emulator services: Log Analytics (Sentinel), Splunk, Elasticsearch.

Each is served on its own listener like the Microsoft services, from the one SIEM copy built at
start-up (`siem_copy`), and `--write-config --siem NAME` points the agent's `[siem]` table at it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.emulator import elastic, loganalytics, splunk
from agent.emulator.tokens import Claims

if TYPE_CHECKING:
    from agent.emulator.state import State


def workspace_id(seed: int) -> str:
    """A stable Log Analytics workspace GUID per scenario seed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-workspace/{seed}"))


def _copy(state: State) -> Any:
    if state.siem is None:
        raise RuntimeError("the SIEM copy is built before listening")
    return state.siem


def loganalytics_app(state: State) -> web.Application:
    def token_ok(token: str) -> bool:
        return isinstance(state.tokens.check(f"Bearer {token}", "loganalytics"), Claims)

    return loganalytics.app(_copy(state), token_ok=token_ok, seed=state.scenario.seed)


def splunk_app(state: State) -> web.Application:
    return splunk.app(_copy(state), token=state.splunk_token)


def elastic_app(state: State) -> web.Application:
    return elastic.app(_copy(state), api_key=state.elastic_api_key, seed=state.scenario.seed)


def first_line(state: State) -> dict[str, Any]:
    return {"workspace_id": _copy(state).workspace_id, "splunk_token": state.splunk_token,
            "elastic_api_key": state.elastic_api_key}
