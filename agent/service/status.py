"""What `agent status` tells: per stream, the state the service's alerts announce, at a glance.

A stream's collection status (cursor, last success, last error, gaps) is written by every pass;
the SIEM's side (gaps found, buckets that could not be verified) by every reconcile, into its own
object beside it so the two writers never overwrite each other. Stalled and silent are computed
here from the same facts and with the same rules the service alerts on, so `status` shows what
the alerts said, including when the service is not running. The table a terminal shows is drawn
by `agent.cli.render.status_text`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from agent.archive import layout
from agent.archive.archive import Archive
from agent.archive.codec import format_time, parse_time
from agent.checkpoint import Checkpoints
from agent.config import Config
from agent.errors import AgentError, ObjectNotFound, StoreError
from agent.logs import event
from agent.service.silence import is_silent
from agent.store.base import Store

log = logging.getLogger("agent.service.status")


def siem_state_key(tenant: str, stream: str) -> str:
    return layout.siem_state_key(tenant, stream)


async def record_siem_state(store: Store, report: Any, when: datetime | None = None) -> None:
    """After a reconcile: per stream, what the SIEM was found to lack (or that it could not be checked).
    Failing to write it is logged, never fails the reconcile that found it."""
    try:
        await _record(store, report, when)
    except StoreError as exc:
        event(log, logging.WARNING, "Could not record the reconcile result for `agent status`.", error=str(exc))


async def _record(store: Store, report: Any, when: datetime | None) -> None:
    at = format_time(when or datetime.now(UTC))
    for s in report.streams:
        state = "unverified" if s.unverified else ("gap" if s.missing_in_siem else "ok")
        b = s.backfill or {}
        if state == "gap" and not b.get("dry_run") and b.get("remaining", 1) == 0:
            state = "backfilled"  # every missing record acknowledged by the SIEM in this run
        doc = {"state": state, "checked_at": at, "missing_in_siem": len(s.missing_in_siem),
               "missing_in_agent": len(s.missing_in_agent), "unverified_buckets": len(s.unverified),
               "since": _iso(report.since), "until": _iso(report.until)}
        await store.put(siem_state_key(s.tenant, s.stream), orjson.dumps(doc), overwrite=True)


def _iso(us: int) -> str:
    return format_time(datetime.fromtimestamp(us / 1e6, UTC))


async def load_siem_state(store: Store, tenant: str, stream: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = orjson.loads(await store.get(siem_state_key(tenant, stream)))
        return doc
    except (ObjectNotFound, orjson.JSONDecodeError):
        return {}


@dataclass
class Row:
    tenant: str  # label: the config's name, else the GUID
    tenant_id: str
    stream: str
    cursor: str | None
    last_success: str | None
    records: int
    last_error: str | None
    last_error_at: str | None
    gaps: list[dict[str, Any]]
    siem: dict[str, Any]
    states: list[str]

    @property
    def open_gaps(self) -> list[dict[str, Any]]:
        """Gaps not recovered through another API (recovered ones stay listed, with how, in --json)."""
        return [g for g in self.gaps if not g.get("recovered")]

    @property
    def needs_attention(self) -> bool:
        """What makes `agent status` exit 1: collection is failing, stalled or has lost records."""
        return bool(self.last_error or self.open_gaps or "stalled" in self.states)

    def as_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "tenant_id": self.tenant_id, "stream": self.stream,
                "state": ", ".join(self.states), "cursor": self.cursor, "last_success": self.last_success,
                "records": self.records, "last_error": self.last_error, "last_error_at": self.last_error_at,
                "gaps": self.gaps, "siem": self.siem}


async def rows(cfg: Config, store: Store, now: datetime) -> list[Row]:
    cps, archive = Checkpoints(store), Archive(store)
    out = []
    for tenant in cfg.tenants:
        for stream in tenant.streams:
            st = await cps.load_status(tenant.id, stream)
            cur = await cps.load(tenant.id, stream)
            row = Row(tenant=tenant.label, tenant_id=tenant.id, stream=stream,
                      cursor=st.get("cursor") or (cur.position.isoformat() if cur else None),
                      last_success=st.get("last_success"), records=st.get("records_stored", 0),
                      last_error=st.get("last_error"), last_error_at=st.get("last_error_at"),
                      gaps=st.get("gaps", []), siem=await load_siem_state(store, tenant.id, stream), states=[])
            row.states = await _states(cfg, archive, row, now)
            out.append(row)
    return out


async def _states(cfg: Config, archive: Any, row: Row, now: datetime) -> list[str]:
    states = []
    if row.last_error:
        states.append("failing")
    if row.last_success is None:
        states.append("never collected")
    elif now - parse_time(row.last_success) > cfg.service.stall_threshold:
        states.append("stalled")
    if row.open_gaps:
        states.append("archive gap")
    if row.last_success is not None and await _silent(cfg, archive, row, now):
        states.append("silent")
    siem = row.siem.get("state")
    if siem == "gap":
        states.append("SIEM gap")
    elif siem == "unverified":
        states.append("SIEM unverified")
    return states or ["ok"]


async def _silent(cfg: Config, archive: Any, row: Row, now: datetime) -> bool:
    try:
        return await is_silent(archive, row.tenant_id, row.stream, now, cfg.service.silence_ratio)
    except (AgentError, OSError):
        return False  # a damaged segment is `agent verify`'s to report; status stays readable


async def probe(store: Store) -> str | None:
    """A failure that could not be written (disk full, S3 refusing writes) is not in any status
    document: probe the store so a clean-looking table cannot hide it."""
    try:
        await store.check()
    except StoreError as exc:
        return str(exc)
    return None
