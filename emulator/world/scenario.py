"""The scenario file (contract 7): parsed once into frozen dataclasses, every key checked.

Relative times ("-48h") are resolved against the emulator's start instant, so the same file and
the same start instant always give the same data. Unknown keys are errors naming the key, so a
typo never silently changes what a test proves.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.siems.siem_copy import SiemPlan, parse_plan
from emulator.world.catalog import CONTENT_TYPES, STREAMS
from emulator.world.clock import parse_duration, parse_iso, seconds

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LICENSES = ("free", "p1", "p2")
GRAPH_APP_QUOTA = 122  # identity and access reports, requests / 10 s per app across all tenants
FAULT_KINDS = (
    "throttle", "server_error", "reset", "truncated", "html_error", "token_expiry", "empty_page", "licence_error"
)


class ScenarioError(ValueError):
    """The scenario file is invalid; the message names the key."""


@dataclass(frozen=True)
class StreamPlan:
    """How many records one stream has and how the API misbehaves with them."""

    records: int = 100
    duplicate_fraction: float = 0.0
    late_fraction: float = 0.0
    late_window: int = seconds(900)
    late_delay: int = seconds(20)
    corpus: Path | None = None  # serve these NDJSON records instead of generated ones
    corpus_times: str = "rebase"  # "rebase": spread over the span (time field only); "keep": byte-for-byte


@dataclass(frozen=True)
class Unavailable:
    """A Management blob listed but answering 404/AF20050 until it expires."""

    stream: str
    after: int  # the first blob of the stream whose contentCreated >= this instant


@dataclass(frozen=True)
class Stall:
    """A wall-clock window in which every data request of one API is answered `delay` late."""

    start: int
    end: int
    delay: float  # seconds


@dataclass(frozen=True)
class GraphPlan:
    issues: int = 0  # admin/serviceAnnouncement/issues to serve
    messages: int = 0  # admin/serviceAnnouncement/messages to serve
    stalls: tuple[Stall, ...] = ()


@dataclass(frozen=True)
class AuditSearchPlan:
    """`[audit_search]`: the Graph audit log query API (emulator/microsoft/audit_search.py)."""

    permission: str = "granted"  # "missing": 403 on create (before April 2026); "silent": 0 records, no error
    latency: int = seconds(2)  # from create to "succeeded" (real searches take minutes)
    failed_fraction: float = 0.0  # queries that end "failed" instead (a documented status value)


@dataclass(frozen=True)
class SecurityPlan:
    """`[security]`: the Graph security API, Defender alerts and incidents (emulator/microsoft/security.py)."""

    permission: str = "granted"  # "missing": 403, as without SecurityAlert/SecurityIncident.Read.All
    update_fraction: float = 0.5  # alerts (incidents) that get a second version after creation


@dataclass(frozen=True)
class ManagementPlan:
    page_size: int = 200  # blobs per subscriptions/content page
    blob_records: int = 100  # at most this many records per blob
    content_delay: tuple[int, int] = (seconds(300), seconds(5400))  # event -> blob, 5-90 min
    straggler_fraction: float = 0.02  # records held back into a much later blob
    straggler_delay: int = seconds(6 * 3600)
    subscribed: tuple[str, ...] | None = None  # None: every scenario content type (the primary runs)
    disabled: tuple[str, ...] = ()  # content types an admin disabled (AF20023)
    unavailable: tuple[Unavailable, ...] = ()
    throttle_status: int = 403  # AF429 is documented with HTTP 403
    stalls: tuple[Stall, ...] = ()
    next_page_form: str = "documented"  # NextPageUri links: the docs' example, or the form seen in the wild
    start_interval: int = seconds(15 * 60)  # documented wait between subscription start requests; 0 = off


NEXT_PAGE_FORMS = ("documented", "observed")


@dataclass(frozen=True)
class Faults:
    """Per-request probabilities on the data APIs (never on login)."""

    throttle: float = 0.0
    server_error: float = 0.0
    reset: float = 0.0
    truncated: float = 0.0
    html_error: float = 0.0
    token_expiry: float = 0.0
    empty_page: float = 0.0
    # Graph report lists only: 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant whatever the
    # licence, as reported intermittently for premium tenants (microsoft-graph-docs#14120,
    # microsoft-graph-docs-contrib#3759). Other APIs draw it as no fault.
    licence_error: float = 0.0
    retry_after: float = 2.0  # seconds in Retry-After of an injected Graph 429

    def probabilities(self) -> list[tuple[str, float]]:
        return [(k, float(getattr(self, k))) for k in FAULT_KINDS]


@dataclass(frozen=True)
class Quota:
    graph_requests_per_10s: int = 5  # identity and access reports, per app per tenant; 0 = unlimited
    # The same reports, per app across all tenants: 122 published (learn.microsoft.com/graph/
    # throttling-limits). On by default when a scenario has several tenants (as the real service
    # always is), unless graph_requests_per_10s = 0 asks for no quota at all; 0 = off.
    graph_app_requests_per_10s: int = 0
    management_requests_per_minute: int = 2000  # per tenant; 0 = unlimited


@dataclass(frozen=True)
class SiemGap:
    stream: str  # a stream name or "*"
    start: int
    end: int
    drop_fraction: float = 1.0


@dataclass(frozen=True)
class Tenant:
    id: str
    license: str
    streams: Mapping[str, StreamPlan]


@dataclass(frozen=True)
class Auth:
    client_id: str
    client_secret: str
    token_lifetime: int = seconds(3599)


@dataclass(frozen=True)
class Scenario:
    seed: int
    start: int
    end: int
    tenants: tuple[Tenant, ...]
    auth: Auth
    faults: Faults = field(default_factory=Faults)
    quota: Quota = field(default_factory=Quota)
    management: ManagementPlan = field(default_factory=ManagementPlan)
    graph: GraphPlan = field(default_factory=GraphPlan)
    audit_search: AuditSearchPlan = field(default_factory=AuditSearchPlan)
    security: SecurityPlan = field(default_factory=SecurityPlan)
    siem_gaps: tuple[SiemGap, ...] = ()
    upstream_gaps: tuple[SiemGap, ...] = ()  # [[upstream.gaps]]: lost inside Microsoft, before any API
    siem_plan: SiemPlan = field(default_factory=SiemPlan)
    path: Path | None = None

    def tenant(self, tenant_id: str) -> Tenant | None:
        for t in self.tenants:
            if t.id.lower() == tenant_id.lower():
                return t
        return None


class _Table:
    """One TOML table; remembers which keys were read so leftovers can be named."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where or 'scenario'} must be a table")
        self.data, self.where, self.used = data, where, set[str]()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        value = self.data.get(name, default)
        if name in self.data and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            want = " or ".join(k.__name__ for k in kinds)
            raise ScenarioError(f"{self.key(name)}: expected {want}, got {type(value).__name__}")
        return value

    def fraction(self, name: str, default: float) -> float:
        value = float(self.get(name, (int, float), default))
        if not 0.0 <= value <= 1.0:
            raise ScenarioError(f"{self.key(name)}: {value} is not a fraction between 0 and 1")
        return value

    def count(self, name: str, default: int, minimum: int = 0) -> int:
        value: int = self.get(name, (int,), default)
        if value < minimum:
            raise ScenarioError(f"{self.key(name)}: {value} is below the minimum {minimum}")
        return value

    def duration(self, name: str, default: int) -> int:
        value = self.get(name, (str, int, float), None)
        if value is None:
            return default
        if isinstance(value, int | float):
            return seconds(value)
        try:
            ticks = parse_duration(value)
        except ValueError as exc:
            raise ScenarioError(f"{self.key(name)}: {exc}") from None
        if ticks < 0:
            raise ScenarioError(f"{self.key(name)}: a duration cannot be negative")
        return ticks

    def instant(self, name: str, default: str | None, origin: int) -> int:
        value = self.get(name, (str,), default)
        if value is None:
            raise ScenarioError(f"{self.key(name)} is required")
        return resolve_instant(value, origin, self.key(name))

    def table(self, name: str) -> _Table:
        return _Table(self.get(name, (dict,), {}), self.key(name))

    def tables(self, name: str) -> list[_Table]:
        items = self.get(name, (list,), [])
        return [_Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            where = f" in [{self.where}]" if self.where else ""
            raise ScenarioError(f"unknown key{'s' if len(extra) > 1 else ''}{where}: {', '.join(extra)}")


def resolve_instant(text: str, origin: int, key: str) -> int:
    """'-48h' / '+10m' relative to the start instant, or an RFC 3339 timestamp with a zone."""
    text = text.strip()
    if text[:1] in "+-":
        try:
            return origin + parse_duration(text)
        except ValueError as exc:
            raise ScenarioError(f"{key}: {exc}") from None
    try:
        return parse_iso(text, need_zone=True, need_time=True)
    except ValueError:
        raise ScenarioError(
            f"{key}: {text!r} is neither a relative time like '-48h' nor an RFC 3339 timestamp with a zone"
        ) from None


def _stream(t: _Table, base: Path | None) -> StreamPlan:
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


def _streams(t: _Table, base: Path | None) -> dict[str, StreamPlan]:
    out = {}
    for name in t.data:
        if name not in STREAMS:
            raise ScenarioError(f"{t.key(name)}: unknown stream {name!r}; valid: {', '.join(STREAMS)}")
        out[name] = _stream(t.table(name), base)
    t.finish()
    return out


def _tenant(
    t: _Table, seed: int, index: int, default_streams: dict[str, StreamPlan], base: Path | None
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


def _faults(t: _Table) -> Faults:
    values = {k: t.fraction(k, 0.0) for k in FAULT_KINDS}
    retry_after = t.duration("retry_after", seconds(2)) / 10_000_000
    t.finish()
    if sum(values.values()) > 1.0 + 1e-9:
        raise ScenarioError(f"[faults]: the probabilities add up to {sum(values.values()):.3f}, more than 1")
    return Faults(retry_after=retry_after, **values)


def _content_types(t: _Table, name: str) -> tuple[str, ...] | None:
    value = t.get(name, (list,), None)
    if value is None:
        return None
    for ct in value:
        if ct not in CONTENT_TYPES:
            raise ScenarioError(f"{t.key(name)}: {ct!r} is not a content type ({', '.join(CONTENT_TYPES)})")
    return tuple(value)


def _stalls(tables: list[_Table], origin: int) -> tuple[Stall, ...]:
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


def _graph(t: _Table, origin: int) -> GraphPlan:
    plan = GraphPlan(
        issues=t.count("issues", 0),
        messages=t.count("messages", 0),
        stalls=_stalls(t.tables("stall"), origin),
    )
    t.finish()
    return plan


def _management(t: _Table, origin: int) -> ManagementPlan:
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


def _audit_search(t: _Table) -> AuditSearchPlan:
    permission = t.get("permission", (str,), "granted")
    if permission not in ("granted", "missing", "silent"):
        raise ScenarioError(f"{t.key('permission')}: use \"granted\", \"missing\" or \"silent\"")
    plan = AuditSearchPlan(permission=permission, latency=t.duration("latency", seconds(2)),
                           failed_fraction=t.fraction("failed_fraction", 0.0))
    t.finish()
    return plan


def _security(t: _Table) -> SecurityPlan:
    permission = t.get("permission", (str,), "granted")
    if permission not in ("granted", "missing"):
        raise ScenarioError(f"{t.key('permission')}: use \"granted\" or \"missing\"")
    plan = SecurityPlan(permission=permission, update_fraction=t.fraction("update_fraction", 0.5))
    t.finish()
    return plan


def _gaps(tables: list[_Table], origin: int) -> tuple[SiemGap, ...]:
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


def _upstream(t: _Table, origin: int) -> tuple[SiemGap, ...]:
    """`[[upstream.gaps]]`: records one Microsoft pipeline lost before its API served them.

    A gap names one stream (never "*"): the point is that the sibling pipeline still has them.
    """
    gaps = _gaps(t.tables("gaps"), origin)
    for i, g in enumerate(gaps):
        if g.stream == "*":
            raise ScenarioError(f"upstream.gaps[{i}].stream: name one stream (its sibling keeps the records)")
    t.finish()
    return gaps


def _auth(t: _Table, seed: int) -> Auth:
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
    root = _Table(data, "")
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
