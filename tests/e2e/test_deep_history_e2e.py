"""Deep history: Microsoft 365 audit records older than the Management API's 7 days, through the
Graph audit log query API, end to end against the emulator (HTTPS, MSAL, real store).

`collect --since 30d` from an empty archive must hold every record of those 30 days exactly once,
whichever API served it; a missing permission is a clear error; the silent zero-record answer
(since April 2026) is an error, never "nothing happened"; a national cloud is refused plainly; a
blob lost by a window that then failed is recovered all the same.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.e2e.helpers import assert_exact, edit_config, exported_ids, outcomes, parse_rfc3339, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.e2e.test_management_e2e import UNAVAILABLE
from tests.emulator_fixture import running_emulator

STREAMS = ("o365.exchange", "o365.azure_active_directory")


def scenario(permission: str = "granted", failed: float = 0.0) -> str:
    streams = "".join(f"""
[streams."{name}"]
records = 300
duplicate_fraction = 0.02
""" for name in STREAMS)
    return f"""
seed = 19
start = "-30d"
end = "-2h"
[tenant]
{streams}
[management]
content_delay = ["1m", "5m"]
blob_records = 50
[audit_search]
permission = "{permission}"
latency = "1s"
failed_fraction = {failed}
"""


def _expected(truth: list[dict[str, object]]) -> dict[str, set[str]]:
    """Every record either API can serve now (the agent must not lose the ones only one API has)."""
    now = datetime.now(UTC)
    return {s: {str(t["id"]) for t in truth if t["stream"] == s and t["audit_search"]
                and parse_rfc3339(str(t["visible_at"])) <= now} for s in STREAMS}


def test_collect_30_days_reaches_past_the_management_api(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    # a fifth of the queries end "failed": that costs a new query, never a record
    with running_emulator(scenario(failed=0.2), tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", management_window="24h")
        truth = emu.truth()
        old = [t for t in truth if parse_rfc3339(t["event_time"]) < datetime.now(UTC) - timedelta(days=8)]
        assert len(old) > 200, "the scenario must hold records the Management API no longer lists"
        proc = run_agent(["collect", "--once", "--since", "30d", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert_exact(exported_ids(cfg, STREAMS), _expected(truth))
        provenance = list((tmp_path / "store" / "_meta" / "provenance").rglob("*.json"))
        assert provenance and all(orjson.loads(p.read_bytes())["api"] == "audit_log_query" for p in provenance)
        again = run_agent(["collect", "--once", "--since", "30d", "--config", str(cfg)])
        assert again.returncode == 0, again.stderr[-3000:]
        assert_exact(exported_ids(cfg, STREAMS), _expected(truth))  # each Id once, whichever API served it


def test_missing_permission_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario("missing"), tmp_path, extra_args=start_args(tmp_path)):
        edit_config(cfg, "collection", management_window="24h")
        proc = run_agent(["collect", "--once", "--since", "30d", "--stream", "o365.exchange", "--config", str(cfg)])
        assert proc.returncode == 1
        assert "AuditLogsQuery.Read.All" in proc.stderr and "Traceback" not in proc.stderr


def test_silent_zero_records_is_an_error_not_a_quiet_month(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario("silent"), tmp_path, extra_args=start_args(tmp_path)):
        edit_config(cfg, "collection", management_window="24h")
        proc = run_agent(["collect", "--once", "--since", "30d", "--stream", "o365.exchange", "--config", str(cfg)])
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "AuditLogsQuery.Read.All" in proc.stderr
        status = run_agent(["status", "--json", "--config", str(cfg)])
        row = next(r for r in orjson.loads(status.stdout) if r["stream"] == "o365.exchange")
        assert "no records" in (row["last_error"] or "")


def test_reconcile_30_days_backfills_a_siem_gap_20_days_old(tmp_path: Path) -> None:
    cfg, store = tmp_path / "agent.toml", tmp_path / "store"
    text = scenario().replace("[audit_search]", """[[siem.gaps]]
stream = "o365.exchange"
start = "-21d"
end = "-19d"
drop_fraction = 1.0
[audit_search]""")
    with running_emulator(text, tmp_path, extra_args=("--write-config", str(cfg), "--store-dir", str(store),
                                                      "--siem", "sentinel")) as emu:
        edit_config(cfg, "collection", management_window="24h")
        lost = {t["id"] for t in emu.truth() if t["stream"] == "o365.exchange" and not t["in_siem"]}
        assert lost and all(parse_rfc3339(t["event_time"]) < datetime.now(UTC) - timedelta(days=18)
                            for t in emu.truth() if t["id"] in lost)
        assert run_agent(["collect", "--once", "--since", "30d", "--stream", "o365.exchange",
                          "--config", str(cfg)]).returncode == 0
        args = ["reconcile", "--since", "30d", "--stream", "o365.exchange", "--format", "json", "--config", str(cfg)]
        first = run_agent([*args, "--backfill"])
        report = orjson.loads(first.stdout)
        assert set(report["streams"][0]["missing_in_siem"]) == lost, first.stderr[-2000:]
        after = run_agent(args)
        assert after.returncode == 0, after.stdout[-2000:]
        assert orjson.loads(after.stdout)["streams"][0]["missing_in_siem"] == []


# The first SharePoint blob answers 404 until it expires (about 20 s in); a second, created about three
# minutes later in the same listing window, does the same until it expires (about 3 min in).
TWO_UNAVAILABLE = UNAVAILABLE + """
[[management.unavailable]]
stream = "o365.sharepoint"
after = "-167h57m"
[audit_search]
latency = "1s"
"""


@pytest.mark.slow
def test_a_blob_lost_by_a_window_that_then_failed_is_recovered(tmp_path: Path) -> None:
    """Pass 1 fails on the first blob. Pass 2, once it has expired, finds it lost, then fails on the
    second: the gap is saved open with the failure, and the audit log query API still serves its span,
    so the gap is closed (how, on record) and the span's records equal the emulator's truth."""
    cfg = tmp_path / "agent.toml"
    sp = "o365.sharepoint"
    with running_emulator(TWO_UNAVAILABLE, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", management_lookback="604798s", initial_lookback="8d", max_attempts=3)
        edit_config(cfg, "log", format="json")
        truth = emu.truth()
        gone = sorted({(t["visible_at"], t["content_id"]) for t in truth if t["stream"] == sp and not t["available"]})
        assert len(gone) == 2, gone
        (first_seen, lost_id), (_, failing_id) = gone
        expires = parse_rfc3339(first_seen).timestamp() + 7 * 86400
        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert first.returncode == 1, first.stderr[-3000:]
        assert time.time() < expires, "the first pass ran past the blob's expiry; the scenario is too tight"

        time.sleep(max(0.0, expires - time.time()) + 2)
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 1, second.stderr[-3000:]
        [row] = [o for o in outcomes(second.stderr) if o["stream"] == sp]
        assert row["error"] and failing_id in row["error"], row  # the window that found the loss failed

        status = run_agent(["status", "--json", "--config", str(cfg)])
        [st] = [r for r in orjson.loads(status.stdout) if r["stream"] == sp]
        [g] = st["gaps"]
        assert g["content_id"] == lost_id and g["recovered"]["api"] == "audit_log_query", g
        assert failing_id in (st["last_error"] or "")  # the failure stays visible beside the closed gap
        start, end = parse_rfc3339(g["recovered"]["start"]), parse_rfc3339(g["recovered"]["end"])
        want = {t["id"] for t in truth if t["stream"] == sp and t["audit_search"]
                and start <= parse_rfc3339(t["event_time"]) < end}
        assert {t["id"] for t in truth if t.get("content_id") == lost_id} <= want
        when = {t["id"]: parse_rfc3339(t["event_time"]) for t in truth if t["stream"] == sp}
        held = set(exported_ids(cfg, [sp])[sp])
        assert held <= set(when)  # nothing invented
        assert {i for i in held if start <= when[i] < end} == want
        assert g["recovered"]["records_returned"] == len(want)
