"""Triangulation's pure rules: joining siblings, learning the relation, judging an hour, merging gaps."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from agent.cli.main import main
from agent.triangulate.engine import (
    HOUR_US,
    MATCH_SLACK_US,
    Bucket,
    Item,
    match,
    merge_gaps,
    norm_operation,
)
from agent.triangulate.judge import judge_counts, learn_ratio

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
T0 = 1_764_547_200 * 1_000_000  # 2025-12-01T00:00:00Z in microseconds


def test_operation_names_differ_only_by_the_audit_logs_trailing_dot() -> None:
    assert norm_operation("Update user.") == norm_operation("Update user")
    # en dash and trailing space, as observed in real AuditLogs
    assert norm_operation("Update application \u2013 Certificates and secrets management .") == norm_operation(
        "Update application \u2013 Certificates and secrets management ")
    assert norm_operation("Add user.") != norm_operation("Update user")


def test_match_is_one_to_one_on_correlation_id_operation_and_second() -> None:
    # one correlationId covered "Enable account" and "Update user" (observed): join needs the operation too
    a = [Item("g1", T0, ("c1", "enable account")), Item("g2", T0, ("c1", "update user")),
         Item("g3", T0 + 10 * 1_000_000, ("c2", "add user")), Item("g4", T0, ("c3", "add user"))]
    b = [Item("u1", T0 + MATCH_SLACK_US, ("c1", "update user")), Item("u2", T0, ("c1", "enable account")),
         Item("u3", T0 + 10 * 1_000_000 + MATCH_SLACK_US + 1, ("c2", "add user")),
         Item("u4", T0, ("c9", "add user"))]
    lonely_a, lonely_b = match(a, b)
    assert [i.id for i in lonely_a] == ["g3", "g4"]
    assert [i.id for i in lonely_b] == ["u3", "u4"]
    # a duplicate on one side does not pair twice
    lonely_a, lonely_b = match([Item("g", T0, ("c", "x")), Item("h", T0, ("c", "x"))], [Item("u", T0, ("c", "x"))])
    assert len(lonely_a) == 1 and lonely_b == []


def test_ratio_is_learned_robustly_and_needs_enough_hours() -> None:
    hours = [(40, 24)] * 20 + [(40, 0)] * 8  # a gap covering under half of the hours
    assert learn_ratio(hours) == 0.6
    assert learn_ratio([(10, 6)] * 5) is None
    assert learn_ratio([(0, 5)] * 10) is None  # no activity on a: nothing to learn from


def _week(seed: int, ratio: float) -> list[tuple[int, int]]:
    """A week of hours with a daily cycle; b holds a binomial subset of a (the subset rule)."""
    rng = random.Random(seed)
    out = []
    for h in range(168):
        lam = 5 + 55 * (1 + math.sin(2 * math.pi * h / 24)) / 2
        a = sum(rng.random() < lam / 200 for _ in range(200))
        out.append((a, sum(rng.random() < ratio for _ in range(a))))
    return out


def test_normal_variation_under_the_subset_rule_raises_nothing() -> None:
    for seed in range(8):
        for ratio in (1.0, 0.6, 0.3):
            hours = _week(seed, ratio)
            learned = learn_ratio(hours)
            assert learned is not None
            verdicts = [judge_counts(a, b, learned)[0] for a, b in hours]
            assert set(verdicts) == {"ok"}, (seed, ratio, learned)


def test_a_lost_hour_is_named_on_the_side_that_lacks_it() -> None:
    hours = _week(3, 0.6)
    busy = [i for i, (a, _) in enumerate(hours) if a >= 40][:4]
    for i in busy[:2]:
        hours[i] = (hours[i][0], 0)  # the audit log lost these hours
    for i in busy[2:]:
        hours[i] = (0, hours[i][1])  # Graph lost these
    learned = learn_ratio(hours)
    judged = [judge_counts(a, b, learned) for a, b in hours]
    assert [i for i, j in enumerate(judged) if j[0] == "missing_in_b"] == busy[:2]
    assert [i for i, j in enumerate(judged) if j[0] == "missing_in_a"] == busy[2:]
    assert all(judged[i][3] > 0 for i in busy[:2]) and all(judged[i][2] > 0 for i in busy[2:])


def test_no_baseline_is_not_ok() -> None:
    assert judge_counts(5, 0, None)[0] == "no_baseline"
    assert judge_counts(0, 0, None)[0] == "ok"


def test_gaps_merge_consecutive_hours_per_side() -> None:
    def bk(h: int, ma: int, mb: int) -> Bucket:
        return Bucket(T0 + h * HOUR_US, 0, 0, None, "x", ma, mb)

    gaps = merge_gaps([bk(0, 0, 0), bk(1, 2, 0), bk(2, 3, 1), bk(3, 0, 0), bk(4, 1, 0)])
    assert gaps == [
        {"side": "a", "start": "2025-12-01T01:00:00Z", "end": "2025-12-01T03:00:00Z", "missing": 5},
        {"side": "b", "start": "2025-12-01T02:00:00Z", "end": "2025-12-01T03:00:00Z", "missing": 1},
        {"side": "a", "start": "2025-12-01T04:00:00Z", "end": "2025-12-01T05:00:00Z", "missing": 1},
    ]


def _config(tmp_path: Path, streams: list[str]) -> Path:
    (tmp_path / "secret").write_text("not-a-real-secret-123")
    p = tmp_path / "agent.toml"
    p.write_text(f"""
[[tenants]]
id = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
streams = {streams!r}

[store]
type = "local"
path = "archive"
""".replace("'", '"'))
    return p


def test_no_sibling_pair_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # provisioning has neither a sibling pipeline nor a count witness
    cfg = _config(tmp_path, ["graph.provisioning", "o365.azure_active_directory"])
    assert main(["triangulate", "--config", str(cfg)]) == 2
    assert "sibling" in capsys.readouterr().err


def test_bad_window_and_unwritable_report_are_one_line_errors(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, ["graph.directory_audits", "o365.azure_active_directory"])
    assert main(["triangulate", "--since", "1h", "--until", "2h", "--config", str(cfg)]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    assert main(["triangulate", "--out", str(tmp_path / "no" / "such" / "dir.json"), "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "Traceback" not in err


def test_an_uncollected_archive_is_not_reported_as_clean(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, ["graph.directory_audits", "o365.azure_active_directory"])
    assert main(["triangulate", "--format", "json", "--config", str(cfg)]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    (pair,) = report["pairs"]
    assert pair["judged_hours"] == 0 and {b["verdict"] for b in pair["buckets"]} == {"unsettled"}
    assert "could not judge" in err and "Traceback" not in err
    assert main(["triangulate", "--config", str(cfg)]) == 1
    assert "NOT CHECKED" in capsys.readouterr().out


async def _lossy_archive(tmp_path: Path, now: Any) -> tuple[Any, Any]:
    """Two days of directory events, one an hour; the audit log lost the last five hours."""
    from datetime import timedelta

    from agent.archive.archive import Archive
    from agent.checkpoint import Checkpoints
    from agent.store.local import LocalStore

    archive = Archive(LocalStore(tmp_path))
    graph, ual = [], []
    for i in range(52):
        at = now - timedelta(hours=60 - i)
        corr = f"00000000-0000-4000-8000-{i:012d}"
        graph.append({"id": f"Directory_{corr}_ABCDE_1234", "correlationId": corr, "activityDisplayName": "Add user",
                      "activityDateTime": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        if i < 47:
            ual.append({"Id": f"10000000-0000-4000-8000-{i:012d}", "RecordType": 8, "Operation": "Add user.",
                        "InterSystemsId": corr, "CreationTime": at.strftime("%Y-%m-%dT%H:%M:%S")})
    await archive.write(TENANT, "graph.directory_audits", graph)
    await archive.write(TENANT, "o365.azure_active_directory", ual)
    cps = Checkpoints(archive.store)
    await cps.save(TENANT, "graph.directory_audits", now + timedelta(hours=5))
    return archive, cps


async def test_service_alerts_an_upstream_gap_once_per_episode_and_exports_the_metric(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime, timedelta

    from agent.config import AlertsConfig
    from agent.service.alerts import Alerter
    from agent.service.metrics import Metrics
    from agent.triangulate.engine import triangulate
    from agent.triangulate.schedule import publish
    from tests.service.harness import Metrics as Scraped

    tenant = TENANT
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    archive, cps = await _lossy_archive(tmp_path, now)
    metrics = Metrics()
    alerter = Alerter(AlertsConfig(), None, archive.store, metrics)  # type: ignore[arg-type]
    streams = ["graph.directory_audits", "o365.azure_active_directory"]
    with caplog.at_level("WARNING"):
        for later in (0, 1, 2):  # each run, one more lost hour has settled: the episode grows at its end
            await cps.save(tenant, "o365.azure_active_directory", now + timedelta(hours=later))
            report = await triangulate(archive, [(tenant, streams)], now - timedelta(days=3),
                                       now + timedelta(hours=later), now=now + timedelta(hours=later))
            (pair,) = report.pairs
            assert [(g["side"], g["missing"]) for g in pair.gaps()] == [("b", later + 1)]
            await publish(report, metrics, alerter)
    alerts = [r for r in caplog.records if getattr(r, "fields", {}).get("alert_kind") == "upstream_gap"]
    assert len(alerts) == 1, alerts
    scraped = Scraped.parse(metrics.render().decode())
    assert scraped.get("agent_upstream_missing", tenant=tenant, stream="o365.azure_active_directory") == 3
    assert scraped.get("agent_upstream_missing", tenant=tenant, stream="graph.directory_audits") == 0


async def test_the_service_schedules_triangulation_only_for_sibling_pairs(tmp_path: Path) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from agent.config import Config, Credential, LocalStoreConfig, ServiceConfig, TenantConfig
    from agent.service.metrics import Metrics
    from agent.service.pace import Pace
    from agent.service.supervisor import periodic
    from agent.triangulate.schedule import triangulate_loop

    def cfg(streams: tuple[str, ...]) -> Config:
        tenant = TenantConfig(id=TENANT, client_id="c", credential=Credential(), streams=streams)
        return Config(tenants=(tenant,), store=LocalStoreConfig(path=tmp_path / "s"),
                      service=ServiceConfig(listen="127.0.0.1:0", notices=False))

    paired = ("graph.directory_audits", "o365.azure_active_directory")
    assert "triangulate" in periodic(cfg(paired))
    assert "triangulate" not in periodic(cfg(paired[:1]))

    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    archive, cps = await _lossy_archive(tmp_path / "archive", now)
    await cps.save(TENANT, "o365.azure_active_directory", now + timedelta(hours=1))
    sent: list[Any] = []
    stop, first = asyncio.Event(), asyncio.Event()
    first.set()

    async def sleep(_: float) -> None:
        stop.set()

    async def send(alert: Any, covers: Any = ()) -> bool:
        sent.append(alert)
        return True

    pace = Pace(stop=stop, first_pass=first, sleeper=sleep)
    await asyncio.wait_for(triangulate_loop(cfg(paired).tenants, archive, None, None, Metrics(),  # type: ignore[arg-type]
                                            SimpleNamespace(send=send), lambda: now + timedelta(hours=1), pace,
                                            3600.0), 10)
    assert [(a.kind, a.fields["stream"], a.fields["missing"]) for a in sent] == [
        ("upstream_gap", "o365.azure_active_directory", 2)]


def test_an_inexact_id_mapping_is_learned_and_only_a_standout_hour_is_a_gap() -> None:
    """If some Graph events never reach the audit log (5 % here), every hour has unjoined records;
    only the hour the audit log really lost is a gap, though every unjoined id is still listed."""
    from agent.triangulate.engine import PAIRS, PairResult, _compare_ids

    rng = random.Random(4)
    a_items, b_items = [], []
    for h in range(72):
        for k in range(40):
            us = T0 + h * HOUR_US + k * 60 * 1_000_000
            key = (f"c{h}-{k}", "add user")
            a_items.append(Item(f"g{h}-{k}", us, key))
            if rng.random() >= 0.05 and h != 50:
                b_items.append(Item(f"u{h}-{k}", us, key))
    res = PairResult("t", PAIRS[0], judged_until=T0 + 72 * HOUR_US)
    _compare_ids(res, a_items, b_items, T0, T0 + 72 * HOUR_US)
    assert [(g["side"], g["start"]) for g in res.gaps()] == [("b", "2025-12-03T02:00:00Z")]
    assert res.gaps()[0]["missing"] >= 35
    assert len(res.missing_in_b) > 100 and not res.missing_in_a
    exact = PairResult("t", PAIRS[0], judged_until=T0 + 72 * HOUR_US)
    _compare_ids(exact, a_items, [*b_items, *(Item(f"x{k}", T0, (f"z{k}", "add user")) for k in range(1))],
                 T0, T0 + 72 * HOUR_US)
    assert ("a", "2025-12-01T00:00:00Z") in [(g["side"], g["start"]) for g in exact.gaps()]
