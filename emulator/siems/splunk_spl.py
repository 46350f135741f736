"""The SPL subset the emulated Splunk runs, over the SIEM copy's events.

Events are the source records as-is (Splunk_TA_o365 `o365:management:activity`; the Azure add-on's
`azure:aad:signin` / `azure:aad:audit`), with fields extracted the way KV_MODE=json does (`a.b`,
arrays as `a{}`). SPL subset: `search` with `field=value`, `field IN (...)`, `NOT`, `index=`,
`sourcetype=`, `earliest=`/`latest=`; then `| bin _time span=Ns`, `| stats count [AS n],
dc(f) [AS d] [BY ...]`, `| fields f ...`, `| fields - _*`. A search outside the subset is a
`SplError` (the export answers it 400). No HTTP here: `splunk.py` serves it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulator.siems.siem_copy import TICKS_PER_SECOND, SiemCopy
from emulator.world import jsontext

SOURCETYPES = {
    "graph.signins.interactive": "azure:aad:signin", "graph.signins.noninteractive": "azure:aad:signin",
    "graph.signins.serviceprincipal": "azure:aad:signin", "graph.signins.managedidentity": "azure:aad:signin",
    "graph.directory_audits": "azure:aad:audit", "graph.provisioning": "azure:aad:provisioning",
    # Splunk Add-on for Microsoft Security (Splunkbase 6207): Graph incidents (`$expand=alerts`) as
    # ms365:defender:incident, each of their alerts as-is as ms365:defender:incident:alerts
    "graph.security_alerts": "ms365:defender:incident:alerts", "graph.security_incidents": "ms365:defender:incident",
}
OFFICE_SOURCETYPE = "o365:management:activity"
INDEX = "main"


class SplError(Exception):
    """A search the subset cannot run."""


def flatten(value: Any, prefix: str = "", out: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """KV_MODE=json extraction: nested keys joined by '.', array elements under 'key{}'; multivalue lists."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list):
        for v in value:
            flatten(v, f"{prefix}{{}}", out)
    elif value is not None:
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        out.setdefault(prefix, []).append(text)
    return out


class Event:
    __slots__ = ("_fields", "body", "index", "indexed", "sourcetype", "time", "visible")

    def __init__(self, time_s: float, body: bytes, index: str, sourcetype: str,
                 indexed: dict[str, list[str]] | None = None, visible: float = 0.0) -> None:
        self.time = time_s
        self.visible = visible  # epoch seconds from which searches return it
        self.body = body
        self.index = index
        self.sourcetype = sourcetype
        self.indexed = indexed  # HEC `fields` (indexed fields), searchable like extracted ones
        self._fields: dict[str, list[str]] | None = None

    def field(self, name: str) -> list[str]:
        if name == "index":
            return [self.index]
        if name == "sourcetype":
            return [self.sourcetype]
        if name == "_time":
            return [str(self.time)]
        if self._fields is None:
            try:
                self._fields = flatten(jsontext.loads(self.body))
            except ValueError:  # a plain-text event (HEC accepts any string): no JSON fields
                self._fields = {}
            for k, v in (self.indexed or {}).items():
                self._fields.setdefault(k, []).extend(v)
        return self._fields.get(name, [])


def build_events(copy: SiemCopy) -> list[Event]:
    out: list[Event] = []
    for sc in copy.streams:
        st = SOURCETYPES.get(sc.stream, OFFICE_SOURCETYPE if sc.stream.startswith("o365.") else "")
        if not st:
            continue
        # searchable once the API served the record plus `ingestion_delay` (siem_copy.Row.ingested), as
        # the add-on reads the same API: not at event time
        out.extend(Event(r.ticks / TICKS_PER_SECOND, r.body, INDEX, st, visible=r.ingested / TICKS_PER_SECOND)
                   for r in sc.rows)
    out.sort(key=lambda e: e.time)
    return out


# ---------------------------------------------------------------- search terms
Term = Callable[[Event], bool]
_TERM_RE = re.compile(r'^(?P<f>[^=\s()]+)\s*(?P<op>!=|=)\s*(?P<v>.+)$')


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _terms(text: str) -> tuple[list[Term], float | None, float | None]:
    try:
        words = shlex.split(text.replace("(", " ( ").replace(")", " ) ").replace(",", " , "), posix=False)
    except ValueError as exc:
        raise SplError(f"Error in 'search' command: {exc}") from None
    terms: list[Term] = []
    earliest = latest = None
    i, negate = 0, False
    while i < len(words):
        w = words[i]
        if w == "NOT":
            negate, i = True, i + 1
            continue
        if i + 2 < len(words) and words[i + 1] == "IN" and words[i + 2] == "(":
            j = words.index(")", i)
            values = {_unquote(v) for v in words[i + 3:j] if v != ","}
            term = _in(w, values)
            i = j + 1
        else:
            m = _TERM_RE.match(w)
            if not m:
                raise SplError(f"Error in 'search' command: unsupported term {w!r}")
            f, op, v = m["f"], m["op"], _unquote(m["v"])
            if f in ("earliest", "latest"):
                stamp = float(v)
                earliest, latest = (stamp, latest) if f == "earliest" else (earliest, stamp)
                i += 1
                continue
            term = _in(f, {v}) if op == "=" else _not(_in(f, {v}))
            i += 1
        terms.append(_not(term) if negate else term)
        negate = False
    return terms, earliest, latest


def _in(field: str, values: set[str]) -> Term:
    return lambda e: any(v in values for v in e.field(field))


def _not(term: Term) -> Term:
    return lambda e: not term(e)


# ---------------------------------------------------------------- pipeline
def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def run(search: str, events: list[Event], earliest: float | None, latest: float | None,
        now: float) -> tuple[list[dict[str, Any]], bool]:
    """Evaluate a search; returns (result rows, is a reporting search)."""
    stages = [s.strip() for s in search.split("|")]
    head = stages[0]
    if not head.startswith("search "):
        raise SplError("Error in 'SearchParser': the search must start with the 'search' command")
    terms, e2, l2 = _terms(head[len("search "):])
    earliest = e2 if e2 is not None else earliest
    latest = l2 if l2 is not None else latest
    rows = [e for e in events if (earliest is None or e.time >= earliest) and (latest is None or e.time < latest)
            and e.time <= now and e.visible <= now and all(t(e) for t in terms)]
    rows.reverse()  # event searches stream newest first
    span: float | None = None
    out: list[dict[str, Any]] | None = None
    keep: list[str] | None = None
    for stage in stages[1:]:
        if m := re.fullmatch(r"bin _time span=(\d+)s", stage):
            span = float(m.group(1))
        elif stage.startswith("stats "):
            out = _stats(stage[6:], rows, span)
        elif stage == "fields - _*":
            keep = [k for k in (keep or []) if not k.startswith("_")]
        elif stage.startswith("fields "):
            keep = [f.strip() for f in stage[7:].split(",") if f.strip()] + ["_time", "_raw"]
        else:
            raise SplError(f"Unknown search command '{stage.split(' ')[0]}'.")
    if out is not None:
        return out, True
    return [_event_result(e, keep) for e in rows], False


def _event_result(e: Event, keep: list[str] | None) -> dict[str, Any]:
    names = keep if keep is not None else ["_raw", "_time", "index", "sourcetype"]
    result: dict[str, Any] = {}
    for n in names:
        if n == "_raw":
            result[n] = e.body.decode()
        elif n == "_time":
            result[n] = _iso(e.time)
        else:
            values = e.field(n)
            if values:
                result[n] = values[0] if len(values) == 1 else values
    return result


_AGG_RE = re.compile(r"^(count|dc\((?P<f>[^)]+)\))(?:\s+AS\s+(?P<a>\w+))?$", re.IGNORECASE)


def _stats(spec: str, rows: list[Event], span: float | None) -> list[dict[str, Any]]:
    aggs_text, _, by_text = spec.partition(" BY ")
    aggs = []
    for part in aggs_text.split(","):
        m = _AGG_RE.match(part.strip())
        if not m:
            raise SplError(f"Error in 'stats' command: unsupported aggregation {part.strip()!r}")
        name = m["a"] or (part.strip() if m["f"] else "count")
        aggs.append((name, m["f"]))
    keys = [k.strip() for k in by_text.split(",") if k.strip()]
    groups: dict[tuple[str, ...], list[Any]] = {}
    for e in rows:
        for key in _keys(e, keys, span):
            state = groups.setdefault(key, [0 if f is None else set() for _, f in aggs])
            for n, (_, f) in enumerate(aggs):
                if f is None:
                    state[n] += 1
                else:
                    state[n].update(e.field(f))
    out = []
    for key, state in sorted(groups.items()):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for (name, _), v in zip(aggs, state, strict=True):
            row[name] = str(v if isinstance(v, int) else len(v))
        out.append(row)
    return out


def _keys(e: Event, keys: list[str], span: float | None) -> list[tuple[str, ...]]:
    if not keys:
        return [()]
    values: list[list[str]] = []
    for k in keys:
        if k == "_time":
            t = e.time - e.time % span if span else e.time
            values.append([_iso(t)])
        else:
            values.append(e.field(k))
    if any(not v for v in values):
        return []  # stats drops events lacking a BY field
    combos: list[tuple[str, ...]] = [()]
    for v in values:
        combos = [(*c, x) for c in combos for x in v]
    return combos
