"""The emulated primary SIEMs as emulator services: Log Analytics (Sentinel) with its Logs Ingestion
endpoint, Splunk (search export and HEC), Elasticsearch (search and `_bulk`).

Each is served on its own listener like the Microsoft services, from the one SIEM copy built at
start-up (`siem_copy`), and `--write-config --siem NAME` points the agent's `[siem]` table at it.
A query listener and its ingestion listener share one service object (kept in `State.shared`), so
what is written through the one becomes visible through the other.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulator.microsoft.tokens import Claims
from emulator.siems import elastic, ingestion, loganalytics, splunk

if TYPE_CHECKING:
    from emulator.world.state import State


def workspace_id(seed: int) -> str:
    """A stable Log Analytics workspace GUID per scenario seed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator-workspace/{seed}"))


def _copy(state: State) -> Any:
    if state.siem is None:
        raise RuntimeError("the SIEM copy is built before listening")
    return state.siem


def _custom_tables(state: State) -> dict[str, ingestion.CustomTable]:
    tables: dict[str, ingestion.CustomTable] = state.shared.setdefault(
        "custom_tables", ingestion.custom_tables(loganalytics.base_tables()))
    return tables


def loganalytics_app(state: State) -> web.Application:
    def token_ok(token: str) -> bool:
        return isinstance(state.tokens.check(f"Bearer {token}", "loganalytics"), Claims)

    return loganalytics.app(_copy(state), token_ok=token_ok, seed=state.scenario.seed,
                            extra_tables=_custom_tables(state))


def ingestion_app(state: State) -> web.Application:
    def token_ok(token: str) -> bool:
        return isinstance(state.tokens.check(f"Bearer {token}", "ingestion"), Claims)

    endpoint = ingestion.IngestionEndpoint(_copy(state), _custom_tables(state),
                                           ingestion.dcr_immutable_id(state.scenario.seed), token_ok,
                                           state.scenario.seed)
    return ingestion.app(endpoint)


def _splunk(state: State) -> splunk.SplunkServer:
    server: splunk.SplunkServer = state.shared.setdefault(
        "splunk", splunk.SplunkServer(_copy(state), state.splunk_token, True, state.splunk_hec_token,
                                      state.scenario.seed))
    return server


def splunk_app(state: State) -> web.Application:
    return splunk.app(_copy(state), token=state.splunk_token, server=_splunk(state))


def splunk_hec_app(state: State) -> web.Application:
    return splunk.hec_app(_splunk(state))


def elastic_app(state: State) -> web.Application:
    return elastic.app(_copy(state), api_key=state.elastic_api_key, seed=state.scenario.seed)


def first_line(state: State) -> dict[str, Any]:
    return {"workspace_id": _copy(state).workspace_id, "dcr_immutable_id": ingestion.dcr_immutable_id(
                state.scenario.seed),
            "splunk_token": state.splunk_token, "splunk_hec_token": state.splunk_hec_token,
            "elastic_api_key": state.elastic_api_key}
