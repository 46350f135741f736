"""End-to-end proofs for the Office 365 Management Activity API (all five content types).

Exact archive under faults and the per-tenant quota (late content picked up by a later pass),
SIGKILL crash safety, and a blob that stays unavailable until it expires: an explicit gap.
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    O365_STREAMS,
    assert_exact,
    compare,
    crash_repeatedly,
    edit_config,
    expected_ids,
    exported_ids,
    outcomes,
    parse_rfc3339,
    run_agent,
)
from tests.e2e.test_graph_e2e import FAULTS, start_args
from tests.emulator_fixture import running_emulator


def management_scenario(records: int, *, quota: int, seed: int, blob_records: int = 15,
                        late_delay: str = "40s", start: str = "-40m") -> str:
    streams = "".join(f"""
[streams."{name}"]
records = {records}
duplicate_fraction = 0.02
late_fraction = 0.05
late_window = "15m"
late_delay = "{late_delay}"
""" for name in O365_STREAMS)
    # Blobs appear 1-5 min after their events (stragglers up to 4 min more), so with the span ending
    # 10 min ago every non-late blob exists before the agent starts; late ones appear at late_delay.
    return f"""
seed = {seed}
start = "{start}"
end = "-10m"
[tenant]
{streams}
[management]
content_delay = ["1m", "5m"]
straggler_fraction = 0.02
straggler_delay = "4m"
blob_records = {blob_records}
page_size = 5
{FAULTS}
[quota]
management_requests_per_minute = {quota}
"""


@pytest.mark.slow
def test_management_all_faults_and_quota_exact_with_late_content(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    # 40 requests/min instead of 2,000: the same rule (a per-tenant sliding minute, AF429 as 403),
    # scaled so the first pass (~45 requests) runs into the limit and still ends in about a minute,
    # well before the late content appears (130 s after the emulator started: a loaded machine adds
    # to the minute the quota takes).
    scenario = management_scenario(50, quota=40, seed=31, late_delay="130s", start="-20m")
    with running_emulator(scenario, tmp_path,
                          extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="4h", management_window="24h")
        edit_config(cfg, "log", format="json")
        truth = emu.truth()
        assert {t["stream"] for t in truth} == set(O365_STREAMS)

        at1 = datetime.now(UTC)
        first = run_agent(["collect", "--once", "--config", str(cfg)])
        end1 = datetime.now(UTC)
        assert first.returncode == 0, first.stderr[-3000:]
        got = exported_ids(cfg, O365_STREAMS)
        report = compare(got, expected_ids(truth, at1, O365_STREAMS))
        assert not any(r["missing"] or r["duplicates"] for r in report.values()), report
        allowed = expected_ids(truth, end1, O365_STREAMS)
        assert all(set(got[s]) <= allowed[s] for s in O365_STREAMS)

        latest = max(parse_rfc3339(t["visible_at"]) for t in truth)
        assert end1 < latest, "the first pass ran past the late content's arrival; the scenario is too tight"
        time.sleep(max(0.0, (latest - datetime.now(UTC)).total_seconds()) + 1)
        at2 = datetime.now(UTC)
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 0, second.stderr[-3000:]
        assert all(o["ok"] for o in outcomes(second.stderr))
        want = expected_ids(truth, at2, O365_STREAMS)
        assert sum(map(len, want.values())) > sum(map(len, expected_ids(truth, end1, O365_STREAMS).values()))
        assert_exact(exported_ids(cfg, O365_STREAMS), want)
        injected = [f for f in emu.faults() if f["fault"] != "quota"]
        assert injected, "no fault was injected: the proof proved nothing about faults"


@pytest.mark.slow
def test_management_sigkill_ten_times_then_archive_equals_truth(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    rng = random.Random(4321)
    scenario = management_scenario(600, quota=0, seed=32, blob_records=20, late_delay="1s", start="-2h")
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="4h", management_window="20m", segment_max_records=40)
        edit_config(cfg, "log", format="json")
        crash_repeatedly(cfg, tmp_path / "collector.log", rng)
        at = datetime.now(UTC)
        final = run_agent(["collect", "--once", "--config", str(cfg)])
        assert final.returncode == 0, final.stderr[-3000:]
        assert_exact(exported_ids(cfg, O365_STREAMS), expected_ids(emu.truth(), at, O365_STREAMS))
        verify = run_agent(["verify", "--config", str(cfg)])
        assert verify.returncode == 0, verify.stdout + verify.stderr


UNAVAILABLE = """
seed = 41
start = "-167h59m45s"
end = "-167h55m"
[tenant]
[streams."o365.sharepoint"]
records = 120
[streams."o365.exchange"]
records = 20
[management]
content_delay = ["5s", "6s"]
straggler_fraction = 0.0
blob_records = 4
[[management.unavailable]]
stream = "o365.sharepoint"
after = "-169h"
"""


@pytest.mark.slow
def test_blob_unavailable_until_it_expires_is_an_exact_recorded_gap(tmp_path: Path) -> None:
    """The span starts just inside the API's 7 days, so the first SharePoint blob (404 until it
    expires) expires about 20-30 s into the test, and then ages out of every listing."""
    cfg = tmp_path / "agent.toml"
    sp = "o365.sharepoint"
    with running_emulator(UNAVAILABLE, tmp_path, extra_args=start_args(tmp_path)) as emu:
        # List as far back as the API allows (default 167h55m would never see this blob) and
        # give up on a failing blob after 3 attempts so the first pass ends before the blob expires.
        # Without the audit log query API (deep_history = false) nothing can bring the blob back.
        edit_config(cfg, "collection", management_lookback="604798s", initial_lookback="8d", max_attempts=3,
                    deep_history=False)
        edit_config(cfg, "log", format="json")
        truth = emu.truth()
        gone = [t for t in truth if t["stream"] == sp and t["available"] is False]
        assert gone
        content_id = gone[0]["content_id"]
        assert {t["content_id"] for t in gone} == {content_id}
        expires = parse_rfc3339(gone[0]["visible_at"]).timestamp() + 7 * 86400

        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert time.time() < expires, "the first pass ran past the blob's expiry; the scenario is too tight"
        assert first.returncode == 1, first.stderr[-3000:]
        [row] = [o for o in outcomes(first.stderr) if o["stream"] == sp]
        assert row["error"] and content_id in row["error"] and row["cursor"] is None

        time.sleep(max(0.0, expires - time.time()) + 2)
        at = datetime.now(UTC)
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 1, second.stderr[-3000:]
        [row] = [o for o in outcomes(second.stderr) if o["stream"] == sp]
        assert row["gaps"] == 1 and row["error"] is None, row

        status = run_agent(["status", "--json", "--config", str(cfg)])
        assert status.returncode == 1
        [st] = [r for r in json.loads(status.stdout) if r["stream"] == sp]
        [g] = st["gaps"]
        assert g["stream"] == sp and g["content_id"] == content_id
        created = parse_rfc3339(g["content_created"])
        assert parse_rfc3339(g["window"]["start"]) <= created < parse_rfc3339(g["window"]["end"])

        ledger_dir = tmp_path / "store" / "_meta" / "ledger" / f"tenant={emu['tenant_id']}" / f"stream={sp}"
        windows = [json.loads(p.read_text()) for p in ledger_dir.glob("2*.json")]
        recorded = [x for w in windows for x in w["gaps"]]
        assert [x["content_id"] for x in recorded] == [content_id]
        assert recorded[0]["window"] == g["window"]
        assert any(w["blobs"].get(content_id, {}).get("state") == "lost" for w in windows)

        # Everything else, in both streams, is archived exactly; the lost blob's records are not.
        streams = (sp, "o365.exchange")
        assert_exact(exported_ids(cfg, streams), expected_ids(truth, at, streams))
        assert any(f["fault"] == "unavailable_blob" for f in emu.faults())


@pytest.mark.slow
def test_blob_expired_unfetched_is_recovered_through_the_audit_log_query_api(tmp_path: Path) -> None:
    """The same lost blob, with deep history on: its span is fetched from the audit log query API,
    the gap stays on record with how it was recovered, and the archive is exact."""
    cfg = tmp_path / "agent.toml"
    sp = "o365.sharepoint"
    with running_emulator(UNAVAILABLE + '[audit_search]\nlatency = "1s"\n', tmp_path,
                          extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", management_lookback="604798s", initial_lookback="8d", max_attempts=3)
        truth = emu.truth()
        gone = [t for t in truth if t["stream"] == sp and t["available"] is False]
        content_id = gone[0]["content_id"]
        expires = parse_rfc3339(gone[0]["visible_at"]).timestamp() + 7 * 86400
        first = run_agent(["collect", "--once", "--config", str(cfg)])
        assert first.returncode == 1, first.stderr[-3000:]
        time.sleep(max(0.0, expires - time.time()) + 2)
        at = datetime.now(UTC)
        second = run_agent(["collect", "--once", "--config", str(cfg)])
        assert second.returncode == 0, second.stderr[-3000:]
        streams = (sp, "o365.exchange")
        want = {s: {t["id"] for t in truth if t["stream"] == s and parse_rfc3339(t["visible_at"]) <= at}
                for s in streams}
        assert_exact(exported_ids(cfg, streams), want)
        assert {t["id"] for t in gone} <= set(exported_ids(cfg, [sp])[sp])
        status = run_agent(["status", "--json", "--config", str(cfg)])
        assert status.returncode == 0, status.stdout
        [st] = [r for r in json.loads(status.stdout) if r["stream"] == sp]
        [g] = st["gaps"]
        assert g["content_id"] == content_id and g["recovered"]["api"] == "audit_log_query"
