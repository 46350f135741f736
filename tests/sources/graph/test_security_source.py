"""The Defender source: its own filter, page size, retention and pacer (no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.checkpoint import Cursor
from agent.config import CollectionConfig, Credential, Endpoints, TenantConfig
from agent.http import RateLimiter
from agent.sources.base import Window
from agent.sources.graph.security import SecuritySource, list_url, security_pacer
from agent.streams import spec

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
TENANT = TenantConfig(id="6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", client_id="11111111-2222-4333-8444-555555555555",
                      credential=Credential(), streams=("graph.security_alerts",),
                      endpoints=Endpoints("https://login.test", "https://graph.test", "https://mgmt.test"))


def test_windows_filter_on_last_update_with_a_bounded_page() -> None:
    url, q = list_url("https://graph.test", "graph.security_alerts",
                      Window(NOW - timedelta(hours=1), NOW), top=1000)
    assert url == "https://graph.test/v1.0/security/alerts_v2"
    assert q == {"$filter": "lastUpdateDateTime ge 2026-03-01T11:00:00Z and lastUpdateDateTime le 2026-03-01T12:00:00Z",
                 "$top": "100"}
    assert list_url("https://graph.test", "graph.security_incidents", Window(NOW, NOW), 10)[0].endswith(
        "/v1.0/security/incidents")


def test_version_key_keeps_each_update_apart() -> None:
    s = spec("graph.security_alerts")
    first = {"id": "da1_-2", "lastUpdateDateTime": "2026-03-01T10:00:00.1234567Z", "status": "new"}
    later = {**first, "lastUpdateDateTime": "2026-03-01T11:00:00.7654321Z", "status": "resolved"}
    assert s.key(first) == "da1_-2@2026-03-01T10:00:00.1234567Z" != s.key(later)
    assert s.source_id(s.key(later)) == "da1_-2"
    assert s.key({"id": "da1_-2"}) is None  # no version: a bad record, quarantined, never keyed on id alone
    assert spec("graph.signins.interactive").key({"id": "x"}) == "x"


def test_retention_is_defenders_180_days_not_graphs_30() -> None:
    source = SecuritySource(TENANT, None, None, RateLimiter(1, 1.0), CollectionConfig())  # type: ignore[arg-type]
    s = "graph.security_alerts"
    source.plan(s, Cursor(TENANT.id, s, NOW - timedelta(days=60)), None, None, NOW)
    assert not source._aged, "60 days is inside Defender's retention"
    source.plan(s, Cursor(TENANT.id, s, NOW - timedelta(days=200)), None, None, NOW)
    assert "graph.security_alerts" in source._aged


def test_pacer_keeps_under_the_hourly_quota() -> None:
    pacer = security_pacer()
    assert pacer.interval * 1500 >= 3600 * 0.999  # 1,500 an hour at most, sustained
