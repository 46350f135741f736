"""Ground truth (`--truth FILE`): one NDJSON line per distinct record, drawn only from the scenario.

Keys: stream, id, event_time, visible_at, in_siem, upstream_lost and, where the event has a record in
the sibling pipeline, sibling {"stream", "id"}, plus tenant; Management records also
carry content_id (their first blob) and available (False when every blob holding the record stays
unavailable until it expires: the gap the agent must report). An upstream-lost record is served by no
API, so its visible_at is null.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from emulator.microsoft.audit_search import RETENTION as AUDIT_RETENTION
from emulator.world.clock import now_ticks, rfc3339
from emulator.world.dataset import Dataset


def lines(data: Dataset) -> list[bytes]:
    out = []
    now = now_ticks()
    for sd in data.all():
        management = sd.info.api == "management"
        for e in sorted([*sd.entries, *sd.lost], key=lambda e: (e.ticks, e.id)):
            row: dict[str, object] = {
                "stream": sd.info.name,
                "id": e.id,
                "event_time": rfc3339(e.ticks),
                "visible_at": None if e.upstream_lost else rfc3339(e.visible),
                "in_siem": e.in_siem,
                "upstream_lost": e.upstream_lost,
                "tenant": sd.tenant,
            }
            if e.sibling is not None:
                row["sibling"] = {"stream": e.sibling[0], "id": e.sibling[1]}
            if e.upstream_lost:
                row["available"] = False  # no API serves it (Graph rows too, for audit-collector)
            if e.superseded:  # a security record's version the API stops serving at its successor's release
                row["superseded_at"] = rfc3339(e.superseded)
            if management:
                row["content_id"] = e.content_id
                row["available"] = e.available  # the Management Activity API can serve it (7 days)
                # the audit log query API can serve it (180 days)
                row["audit_search"] = not e.upstream_lost and now - e.ticks <= AUDIT_RETENTION
            out.append(orjson.dumps(row))
    return out


def write(data: Dataset, path: Path) -> None:
    """Write atomically, so a reader never sees half a truth file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines(data)))
    tmp.replace(path)
