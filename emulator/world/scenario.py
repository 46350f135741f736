"""The scenario file's schema: what a parsed scenario is, as frozen dataclasses, and the
`ScenarioError` every invalid file raises (its message names the key).

Relative times ("-48h") are resolved against the emulator's start instant, so the same file and
the same start instant always give the same data. Reading and checking the file is
`scenario_parse.py` (`parse`, `load`); the checked reading of one TOML table is `scenario_table.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from emulator.siems.siem_copy import SiemPlan
from emulator.world.clock import seconds

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
