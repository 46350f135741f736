"""What `agent audit-collector` learns from the emulator's request and fault logs: which streams a
collector asked for, which faults it got past, which faults could have cost a correct client
records at all, and each client's quota use.

The request log is the emulator's (`STATE_DIR/requests.ndjson`), read as data: this module knows
the documented URL shapes of Graph and the Management Activity API, not the emulator's code.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from emulator.world.catalog import STREAMS
from emulator.world.clock import parse_datetime as parse_time

_BY_CONTENT_TYPE = {s.content_type.lower(): s.name for s in STREAMS.values() if s.content_type}
_BY_EVENT_TYPE = {s.event_type.lower(): s.name for s in STREAMS.values() if s.event_type}
_BY_GRAPH_PATH = {
    s.graph_path: s.name for s in STREAMS.values() if s.api == "graph" and s.graph_path and not s.event_type
}
_SIGNINS = "auditlogs/signins"
_EVENT_TYPE_CLAUSE = re.compile(r"\b(eq|ne)\s+'([^']*)'", re.IGNORECASE)

# Faults whose answer a client that follows the documentation gets past without losing anything, so
# they never explain a missed record: an empty page that still carries @odata.nextLink/NextPageUri
# is not the end of the list ("follow the link until there is none", Graph paging doc; the
# Management reference's NextPageUri). Every other injected fault is an error a documented client
# retries; when the request log shows it never asked again, the fault may explain what it lost.
NO_COST_FAULTS = frozenset({"empty_page"})


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        return None


def _signin_streams(query: dict[str, str], beta: bool) -> set[str]:
    """Sign-in streams one list request reads: its signInEventTypes filter, else interactive only
    (the documented default of both v1.0 and beta)."""
    text = query.get("$filter") or (query.get("filter", "") if beta else "")
    if "signineventtypes" not in text.lower():
        return {_BY_EVENT_TYPE["interactiveuser"]}
    chosen: set[str] = set()
    for op, value in _EVENT_TYPE_CLAUSE.findall(text):
        name = _BY_EVENT_TYPE.get(value.lower())
        if name is not None and op.lower() == "eq":
            chosen.add(name)
        elif name is not None:
            chosen |= set(_BY_EVENT_TYPE.values()) - {name}
    return chosen


def streams_of_request(path_qs: str, blob_streams: dict[str, str]) -> set[str]:
    """The streams one logged request was about: a Management content type (subscriptions, listing)
    or blob (by content id), or a Graph audit list."""
    parts = urlsplit(path_qs)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    query = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    low = [s.lower() for s in segments]
    if low[:1] == ["api"] and "feed" in low:
        found = {_BY_CONTENT_TYPE[ct] for ct in [query.get("contenttype", "").lower()] if ct in _BY_CONTENT_TYPE}
        if "audit" in low and segments[-1].lower() in blob_streams:
            found.add(blob_streams[segments[-1].lower()])
        return found
    if low[:1] in (["v1.0"], ["beta"]):
        rest = "/".join(low[1:])
        if rest == _SIGNINS:
            return _signin_streams(query, beta=low[0] == "beta")
        if rest in _BY_GRAPH_PATH:
            return {_BY_GRAPH_PATH[rest]}
    return set()


def asked_streams(requests: Iterable[dict[str, Any]], blob_streams: dict[str, str]) -> set[str]:
    """Every stream some logged request asked for (answered or not): what the collector was
    configured to collect, whether or not it wrote any of it."""
    out: set[str] = set()
    for line in requests:
        out |= streams_of_request(str(line.get("path", "")), blob_streams)
    return out


def recovered_faults(faults: list[dict[str, Any]], requests: list[dict[str, Any]]) -> set[int]:
    """Faults the collector recovered from: the request log shows the same method and path answered
    without a fault (status < 400) at or after the fault. Without a request log, none are known."""
    answered: dict[tuple[str, str], datetime] = {}
    for line in requests:
        t = _time(line.get("time"))
        if t is None or line.get("fault") is not None or int(line.get("status", 500)) >= 400:
            continue
        key = (str(line.get("method")), str(line.get("path")))
        if key not in answered or t > answered[key]:
            answered[key] = t
    out = set()
    for i, f in enumerate(faults):
        last, t = answered.get((str(f.get("method")), str(f.get("path")))), _time(f.get("time"))
        if last is not None and t is not None and last >= t:
            out.add(i)
    return out


def costless_faults(faults: list[dict[str, Any]]) -> set[int]:
    """Faults that cost a documented client nothing (`NO_COST_FAULTS`)."""
    return {i for i, f in enumerate(faults) if f.get("fault") in NO_COST_FAULTS}


def summarize_requests(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per client (User-Agent): requests per service host, throttled, errors, faults met."""
    by: dict[str, dict[str, Any]] = {}
    for line in lines:
        client = str(line.get("client") or "(no user agent)")
        s = by.setdefault(
            client, {"client": client, "requests": 0, "throttled": 0, "errors": 0, "faults": 0, "hosts": Counter()}
        )
        s["requests"] += 1
        s["throttled"] += bool(line.get("throttled"))
        s["faults"] += line.get("fault") is not None
        s["errors"] += int(line.get("status", 0)) >= 400 and not line.get("throttled")
        s["hosts"][str(line.get("host", "")).split(":")[0]] += 1
    return [{**s, "hosts": dict(s["hosts"].most_common())} for s in by.values()]
