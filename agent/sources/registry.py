"""Which source serves a stream: one per tenant and kind, built with the pacers and tokens it shares.

A stream's spec names its source kind (`agent.streams`); `BUILDERS` maps the kind to the function that
builds it. A new source is a folder beside `graph/` and `management_activity/` plus one entry here.

Quotas shape what is shared: Graph's reports quota is per tenant *and* per app registration across
tenants, so a tenant's Graph streams share one pacer nested in the app's; Defender alerts and incidents
share Graph's token but have a quota of their own; the Management Activity API has its own per
tenant. The registry holds no archive or store: what a source keeps (the Management ledger, the
deep-history provenance) and reads (what the archive holds) come in as `Keeping`, from the collector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agent.auth import Tokens
from agent.config import Config, TenantConfig
from agent.errors import AgentError
from agent.http import HttpClient, RateLimiter
from agent.sources.base import HeldRecords, Source, StateStore
from agent.sources.graph.source import GraphSource
from agent.streams import spec

AUDIT_SEARCH_REQUESTS_PER_10S = 50


@dataclass(frozen=True)
class Keeping:
    """Where sources keep their own state and what they may read of the archive, per tenant id."""

    ledger: Callable[[str], StateStore]  # the Management Activity API window ledger
    provenance: Callable[[str], StateStore]  # how each deep-history window was served
    held: Callable[[str], HeldRecords]  # what the archive holds, read-only


@dataclass
class Sources:
    """Token providers, pacers and sources, one set per tenant, shared by that tenant's streams."""

    cfg: Config
    http: HttpClient
    # The runtime's `tokens` (agent/app.py), so the collector shares msal's cache with every other
    # user of a (tenant, resource).
    tokens: Tokens
    keeping: Keeping
    app_share: Mapping[str, float] = field(default_factory=dict)  # client_id -> share of its app budget
    _by_key: dict[tuple[str, str], Source] = field(default_factory=dict)
    _apps: dict[str, RateLimiter] = field(default_factory=dict)

    def app_pacer(self, client_id: str) -> RateLimiter:
        """One pacer per app registration, shared by all its tenants in this process: the reports
        quota is also 122 requests / 10 s per app across all tenants. An agent of `--shard i/n` gets
        the share of it that its tenants are of the app's tenants."""
        if client_id not in self._apps:
            budget = self.cfg.collection.graph_app_requests_per_10s * self.app_share.get(client_id, 1.0)
            self._apps[client_id] = RateLimiter(max(1, int(budget)), 10.0)
        return self._apps[client_id]

    def for_stream(self, tenant: TenantConfig, stream: str) -> Source:
        return self._get(tenant, spec(stream).source)

    def for_graph(self, tenant: TenantConfig) -> GraphSource:
        """The tenant's Graph source: its token provider and pacer are shared by every Graph request."""
        source = self._get(tenant, "graph")
        if not isinstance(source, GraphSource):
            raise AgentError(f"no Graph source for tenant {tenant.label}")
        return source

    def _get(self, tenant: TenantConfig, kind: str) -> Source:
        key = (tenant.id, kind)
        if key not in self._by_key:
            self._by_key[key] = self._build(tenant, kind)
        return self._by_key[key]

    def _build(self, tenant: TenantConfig, kind: str) -> Source:
        build = BUILDERS.get(kind)
        if build is None:
            raise AgentError(f"no source for {kind}")
        return build(self, tenant)


def _graph(sources: Sources, tenant: TenantConfig) -> Source:
    c = sources.cfg.collection
    pacer = RateLimiter(c.graph_requests_per_10s, 10.0, within=sources.app_pacer(tenant.client_id))
    return GraphSource(tenant, sources.http, sources.tokens(tenant, tenant.endpoints.graph), pacer, c)


def _graph_security(sources: Sources, tenant: TenantConfig) -> Source:
    """Graph's token, its own pacer (a different service and quota)."""
    from agent.sources.graph.security import SecuritySource, security_pacer

    graph = sources.for_graph(tenant)
    return SecuritySource(tenant, sources.http, graph.tokens, security_pacer(), sources.cfg.collection)


def _management_activity(sources: Sources, tenant: TenantConfig) -> Source:
    """The Management Activity API; with `deep_history`, the audit log query API on Graph (Graph's
    token, a pace of its own) behind it for what is older than the API's 7 days."""
    from agent.sources.deep_history.api import AuditSearchSource
    from agent.sources.deep_history.source import WithDeepHistory
    from agent.sources.management_activity.source import ManagementActivitySource

    c, keep = sources.cfg.collection, sources.keeping
    limiter = RateLimiter(c.management_requests_per_minute, 60.0)
    management = ManagementActivitySource(tenant, sources.http, sources.tokens(tenant, tenant.endpoints.management),
                                          limiter, c, keep.ledger(tenant.id))
    if not c.deep_history:
        return management
    # The audit log query API is not under the identity-reports quota (5 / 10 s); Microsoft publishes
    # no number for it, so a modest pace of our own, with 429 Retry-After honoured as everywhere.
    history = AuditSearchSource(tenant, sources.http, sources.for_graph(tenant).tokens,
                                RateLimiter(AUDIT_SEARCH_REQUESTS_PER_10S, 10.0), c)
    return WithDeepHistory(management, history, keep.provenance(tenant.id), keep.held(tenant.id), tenant.id,
                           c.management_lookback)


BUILDERS: dict[str, Callable[[Sources, TenantConfig], Source]] = {
    "graph": _graph,
    "graph_security": _graph_security,
    "management_activity": _management_activity,
}
