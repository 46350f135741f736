"""Reading a scenario file: TOML into the frozen dataclasses of `scenario.py`, section by section
(streams, tenants, faults, quotas, Graph, Management, audit search, Defender, SIEM gaps, auth),
every key checked, relative times resolved against the start instant. `parse` takes the TOML
already loaded; `load` reads the file.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.siems.siem_copy import parse_plan
from emulator.world.catalog import CONTENT_TYPES, STREAMS
from emulator.world.clock import parse_duration, seconds
from emulator.world.scenario import (
    FAULT_KINDS,
    GRAPH_APP_QUOTA,
    GUID_RE,
    LICENSES,
    NEXT_PAGE_FORMS,
    AuditSearchPlan,
    Auth,
    Faults,
    GraphPlan,
    ManagementPlan,
    Quota,
    Scenario,
    ScenarioError,
    SecurityPlan,
    SiemGap,
    Stall,
    StreamPlan,
    Tenant,
    Unavailable,
)
from emulator.world.scenario_table import Table


def _stream(t: Table, base: Path | None) -> StreamPlan:
    d = StreamPlan()
    corpus = t.get("corpus", (str,), None)
    path = None
    if corpus is not None:
        path = Path(corpus).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise ScenarioError(f"{t.key('corpus')}: {path} is not a file")
    times = t.get("corpus_times", (str,), "rebase")
    if times not in ("rebase", "keep"):
        raise ScenarioError(f"{t.key('corpus_times')}: {times!r} is not 'rebase' or 'keep'")
    plan = StreamPlan(
        records=t.count("records", d.records),
        duplicate_fraction=t.fraction("duplicate_fraction", 0.0),
        late_fraction=t.fraction("late_fraction", 0.0),
        late_window=t.duration("late_window", d.late_window),
        late_delay=t.duration("late_delay", d.late_delay),
        corpus=path,
        corpus_times=times,
    )
    t.finish()
    return plan


def _streams(t: Table, base: Path | None) -> dict[str, StreamPlan]:
    out = {}
    for name in t.data:
        if name not in STREAMS:
            raise ScenarioError(f"{t.key(name)}: unknown stream {name!r}; valid: {', '.join(STREAMS)}")
        out[name] = _stream(t.table(name), base)
    t.finish()
    return out


def _tenant(
    t: Table, seed: int, index: int, default_streams: dict[str, StreamPlan], base: Path | None
) -> Tenant:
    tid = t.get("id", (str,), None) or str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator:{seed}:tenant:{index}"))
    if not GUID_RE.match(tid):
        raise ScenarioError(f"{t.key('id')}: {tid!r} is not a tenant GUID")
    lic = t.get("license", (str,), "p2")
    if lic not in LICENSES:
        raise ScenarioError(f"{t.key('license')}: {lic!r} is not one of {', '.join(LICENSES)}")
    streams = _streams(t.table("streams"), base) if "streams" in t.data else dict(default_streams)
    t.finish()
    return Tenant(id=tid.lower(), license=lic, streams=streams)


def _faults(t: Table) -> Faults:
    values = {k: t.fraction(k, 0.0) for k in FAULT_KINDS}
    retry_after = t.duration("retry_after", seconds(2)) / 10_000_000
    t.finish()
    if sum(values.values()) > 1.0 + 1e-9:
        raise ScenarioError(f"[faults]: the probabilities add up to {sum(values.values()):.3f}, more than 1")
    return Faults(retry_after=retry_after, **values)


def _content_types(t: Table, name: str) -> tuple[str, ...] | None:
    value = t.get(name, (list,), None)
    if value is None:
        return None
    for ct in value:
        if ct not in CONTENT_TYPES:
            raise ScenarioError(f"{t.key(name)}: {ct!r} is not a content type ({', '.join(CONTENT_TYPES)})")
    return tuple(value)


def _stalls(tables: list[Table], origin: int) -> tuple[Stall, ...]:
    out = []
    for t in tables:
        stall = Stall(
            start=t.instant("start", None, origin),
            end=t.instant("end", None, origin),
            delay=t.duration("delay", seconds(5)) / 10_000_000,
        )
        if stall.end <= stall.start:
            raise ScenarioError(f"{t.where}: end must be after start")
        t.finish()
        out.append(stall)
    return tuple(out)


def _graph(t: Table, origin: int) -> GraphPlan:
    plan = GraphPlan(
        issues=t.count("issues", 0),
        messages=t.count("messages", 0),
        stalls=_stalls(t.tables("stall"), origin),
    )
    t.finish()
    return plan


def _management(t: Table, origin: int) -> ManagementPlan:
    d = ManagementPlan()
    delay = t.get("content_delay", (list,), None)
    if delay is None:
        content_delay = d.content_delay
    else:
        if len(delay) != 2 or not all(isinstance(x, str) for x in delay):
            raise ScenarioError(f'{t.key("content_delay")}: expected ["<min>", "<max>"], e.g. ["5m", "90m"]')
        try:
            content_delay = (parse_duration(delay[0]), parse_duration(delay[1]))
        except ValueError as exc:
            raise ScenarioError(f"{t.key('content_delay')}: {exc}") from None
        if not 0 < content_delay[0] <= content_delay[1]:
            raise ScenarioError(f"{t.key('content_delay')}: need 0 < min <= max")
    unavailable = []
    for u in t.tables("unavailable"):
        stream = u.get("stream", (str,), None)
        if stream not in STREAMS or STREAMS[stream].api != "management":
            raise ScenarioError(f"{u.key('stream')}: {stream!r} is not a Management Activity stream")
        unavailable.append(Unavailable(stream=stream, after=u.instant("after", None, origin)))
        u.finish()
    status = t.count("throttle_status", 403)
    if status not in (403, 429):
        raise ScenarioError(f"{t.key('throttle_status')}: must be 403 (documented) or 429")
    form = t.get("next_page_form", (str,), d.next_page_form)
    if form not in NEXT_PAGE_FORMS:
        raise ScenarioError(f"{t.key('next_page_form')}: must be one of {', '.join(NEXT_PAGE_FORMS)}")
    plan = ManagementPlan(
        next_page_form=form,
        start_interval=t.duration("start_interval", d.start_interval),
        page_size=t.count("page_size", d.page_size, minimum=1),
        blob_records=t.count("blob_records", d.blob_records, minimum=1),
        content_delay=content_delay,
        straggler_fraction=t.fraction("straggler_fraction", d.straggler_fraction),
        straggler_delay=t.duration("straggler_delay", d.straggler_delay),
        subscribed=_content_types(t, "subscribed"),
        disabled=_content_types(t, "disabled") or (),
        unavailable=tuple(unavailable),
        throttle_status=status,
        stalls=_stalls(t.tables("stall"), origin),
    )
    t.finish()
    return plan


def _audit_search(t: Table) -> AuditSearchPlan:
    permission = t.get("permission", (str,), "granted")
    if permission not in ("granted", "missing", "silent"):
        raise ScenarioError(f"{t.key('permission')}: use \"granted\", \"missing\" or \"silent\"")
    plan = AuditSearchPlan(permission=permission, latency=t.duration("latency", seconds(2)),
                           failed_fraction=t.fraction("failed_fraction", 0.0))
    t.finish()
    return plan


def _security(t: Table) -> SecurityPlan:
    permission = t.get("permission", (str,), "granted")
    if permission not in ("granted", "missing"):
        raise ScenarioError(f"{t.key('permission')}: use \"granted\" or \"missing\"")
    plan = SecurityPlan(permission=permission, update_fraction=t.fraction("update_fraction", 0.5))
    t.finish()
    return plan


def _gaps(tables: list[Table], origin: int) -> tuple[SiemGap, ...]:
    gaps = []
    for g in tables:
        stream = g.get("stream", (str,), "*")
        if stream != "*" and stream not in STREAMS:
            raise ScenarioError(f"{g.key('stream')}: unknown stream {stream!r}")
        gap = SiemGap(
            stream=stream,
            start=g.instant("start", None, origin),
            end=g.instant("end", None, origin),
            drop_fraction=g.fraction("drop_fraction", 1.0),
        )
        if gap.end <= gap.start:
            raise ScenarioError(f"{g.where}: end must be after start")
        g.finish()
        gaps.append(gap)
    return tuple(gaps)


def _upstream(t: Table, origin: int) -> tuple[SiemGap, ...]:
    """`[[upstream.gaps]]`: records one Microsoft pipeline lost before its API served them.

    A gap names one stream (never "*"): the point is that the sibling pipeline still has them.
    """
    gaps = _gaps(t.tables("gaps"), origin)
    for i, g in enumerate(gaps):
        if g.stream == "*":
            raise ScenarioError(f"upstream.gaps[{i}].stream: name one stream (its sibling keeps the records)")
    t.finish()
    return gaps


def _auth(t: Table, seed: int) -> Auth:
    client_id = t.get("client_id", (str,), None) or str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"emulator:{seed}:app")
    )
    if not GUID_RE.match(client_id):
        raise ScenarioError(f"{t.key('client_id')}: {client_id!r} is not a GUID")
    secret = t.get("client_secret", (str,), None) or uuid.uuid4().hex + "~Emu"
    lifetime = t.duration("token_lifetime", seconds(3599))
    if lifetime < seconds(1):
        raise ScenarioError(f"{t.key('token_lifetime')}: must be at least 1s")
    t.finish()
    return Auth(client_id=client_id.lower(), client_secret=secret, token_lifetime=lifetime)


def parse(data: Mapping[str, Any], origin: int, path: Path | None = None) -> Scenario:
    """Build a Scenario from parsed TOML; `origin` is the emulator's start instant in ticks."""
    base = path.parent if path else None
    root = Table(data, "")
    seed = root.get("seed", (int,), 0)
    start = root.instant("start", "-24h", origin)
    end = root.instant("end", "-10m", origin)
    if end <= start:
        raise ScenarioError("end must be after start")
    streams = _streams(root.table("streams"), base)
    if "tenant" in data and "tenants" in data:
        raise ScenarioError("use either [tenant] or [[tenants]], not both")
    tables = root.tables("tenants") if "tenants" in data else [root.table("tenant")]
    tenants = tuple(_tenant(t, seed, i, streams, base) for i, t in enumerate(tables))
    if len({t.id for t in tenants}) != len(tenants):
        raise ScenarioError("tenants: the same tenant id appears twice")
    if not tenants:
        raise ScenarioError("[[tenants]] is empty")
    faults = _faults(root.table("faults"))
    qt = root.table("quota")
    per_tenant = qt.count("graph_requests_per_10s", 5)
    quota = Quota(
        graph_requests_per_10s=per_tenant,
        graph_app_requests_per_10s=qt.count(
            "graph_app_requests_per_10s", GRAPH_APP_QUOTA if len(tenants) > 1 and per_tenant else 0
        ),
        management_requests_per_minute=qt.count("management_requests_per_minute", 2000),
    )
    qt.finish()
    management = _management(root.table("management"), origin)
    graph = _graph(root.table("graph"), origin)
    audit_search = _audit_search(root.table("audit_search"))
    security = _security(root.table("security"))
    siem = root.table("siem")
    gaps = _gaps(siem.tables("gaps"), origin)
    raw_plan = {k: v for k, v in siem.data.items() if k != "gaps"}
    try:
        siem_plan = parse_plan(raw_plan)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    siem.used.update(raw_plan)
    siem.finish()
    upstream_gaps = _upstream(root.table("upstream"), origin)
    auth = _auth(root.table("auth"), seed)
    root.finish()
    return Scenario(
        seed=seed,
        start=start,
        end=end,
        tenants=tenants,
        auth=auth,
        faults=faults,
        quota=quota,
        management=management,
        graph=graph,
        audit_search=audit_search,
        security=security,
        siem_gaps=gaps,
        upstream_gaps=upstream_gaps,
        siem_plan=siem_plan,
        path=path,
    )


def load(path: Path | str, origin: int) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p} is not UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p} is not valid TOML: {exc}") from None
    return parse(data, origin, p.resolve())
