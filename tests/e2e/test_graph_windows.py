"""Graph off the happy path, agent against emulator: the provisioning list documents only strict
`gt`/`lt` bounds and no order, so windows must meet exactly; the reports quota also binds per app
across tenants; premium tenants get licence 403s now and then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import orjson
import pytest

from tests.e2e.helpers import edit_config, export, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator


def _at(t: datetime, extra_ticks: int = 0) -> str:
    """Graph's 7-digit form of `t` plus `extra_ticks` hundred-nanosecond ticks."""
    ticks = t.microsecond * 10 + extra_ticks
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ticks:07d}Z"


def test_provisioning_windows_meet_exactly_at_their_edges(tmp_path: Path) -> None:
    t0 = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    edge, t2 = t0 + timedelta(hours=1), t0 + timedelta(hours=2)
    times = {
        "at-start": _at(t0),
        "on-edge": _at(edge),  # the first instant of the second window
        "edge-minus-1ms": _at(edge - timedelta(milliseconds=1)),  # the last millisecond of the first
        "edge-minus-half-ms": _at(edge - timedelta(milliseconds=1), 5000),  # inside both lower bounds
        "edge-plus-tick": _at(edge, 1),
        "before-until": _at(t2 - timedelta(microseconds=1)),
    }
    corpus = tmp_path / "provisioning.ndjson"
    corpus.write_bytes(b"".join(orjson.dumps({"id": k, "activityDateTime": v}) + b"\n" for k, v in times.items()))
    scenario = (f'seed = 5\nstart = "-6h"\nend = "-10m"\n[tenant]\n[streams."graph.provisioning"]\n'
                f'corpus = "{corpus}"\ncorpus_times = "keep"\n[quota]\ngraph_requests_per_10s = 0\n')
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path / "emu", extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", window="1h", page_size=2)
        since, until = f"{t0:%Y-%m-%dT%H:%M:%SZ}", f"{t2:%Y-%m-%dT%H:%M:%SZ}"
        proc = run_agent(["collect", "--once", "--config", str(cfg), "--since", since, "--until", until])
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = [r["id"] for r in export(cfg)]
        log = Path(emu.info["request_log"]).read_bytes().splitlines()
        paths = [unquote(orjson.loads(x)["path"]).replace("+", " ") for x in log if b"auditLogs/provisioning" in x]
    assert sorted(got) == sorted(times)  # each exactly once: none lost at the edge, duplicates deduped
    firsts = [p for p in paths if "$skiptoken" not in p]
    assert len(firsts) == 2 and all(" gt " in p and " lt " in p and " ge " not in p for p in firsts), firsts
    assert any(f"gt {edge - timedelta(milliseconds=1):%Y-%m-%dT%H:%M:%S}.999Z" in p for p in firsts), firsts


def test_intermittent_licence_answers_cost_a_pause_never_a_record(tmp_path: Path) -> None:
    """A P2 tenant answered Authentication_RequestFromNonPremiumTenantOrB2CTenant on a third of its
    report requests (microsoft-graph-docs#14120): every record is collected, the pass succeeds, and
    the log says why it paused; the tenant is not concluded unlicensed."""
    scenario = ('seed = 8\nstart = "-3h"\nend = "-10m"\n[tenant]\nlicense = "p2"\n'
                '[streams."graph.signins.interactive"]\nrecords = 60\n[streams."graph.directory_audits"]\n'
                'records = 60\n[faults]\nlicence_error = 0.33\n[quota]\ngraph_requests_per_10s = 0\n')
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path / "emu", extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", window="1h", initial_lookback="4h", page_size=10)
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        truth = {t["id"] for t in emu.truth()}
        refusals = [f for f in emu.faults() if f["fault"] == "licence_error"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["id"] for r in export(cfg)} == truth
    assert len(refusals) >= 5 and all(f["status"] == 403 for f in refusals)
    assert "intermittently to premium tenants" in proc.stderr and "LicenseError" not in proc.stdout


@pytest.mark.slow
def test_tenants_of_one_app_share_its_quota_without_429s(tmp_path: Path) -> None:
    """learn.microsoft.com/graph/throttling-limits: 5 / 10 s per tenant *and* a per-app budget across
    tenants (122 published; 4 here, so four tenants would overrun it at their own pace)."""
    scenario = ('seed = 9\nstart = "-3h"\nend = "-10m"\n[streams."graph.directory_audits"]\nrecords = 20\n'
                "[[tenants]]\n[[tenants]]\n[[tenants]]\n[[tenants]]\n[quota]\ngraph_app_requests_per_10s = 4\n")
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path / "emu", extra_args=start_args(tmp_path)) as emu:
        assert "graph_app_requests_per_10s = 4" in cfg.read_text()
        edit_config(cfg, "collection", window="1d", initial_lookback="4h", page_size=10)
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        truth = {t["id"] for t in emu.truth()}
        quota = [f for f in emu.faults() if f["fault"] == "quota"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["id"] for r in export(cfg)} == truth and len(truth) == 80
    assert quota == []
