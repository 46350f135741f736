"""Per SIEM: reconcile -> backfill -> reconcile leaves nothing missing; a second backfill sends nothing;
a backfill killed with SIGKILL and run again leaves every missing record in the SIEM exactly once.

Assertions are on the emulated SIEM's own account of what was written into it (its debug view) and
on the emulator's ground truth, not only on the agent's report.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.backfill.helpers import backfill_env, duplicates, missing

SIEMS = ("sentinel", "splunk", "elastic")


@pytest.mark.parametrize("siem", SIEMS)
def test_reconcile_backfill_reconcile(tmp_path, siem):
    with backfill_env(tmp_path, siem) as env:
        lost = env.lost()
        assert len(lost) > 50
        rc, first = env.reconcile()
        assert rc == 3 and missing(first) == lost

        rc, preview = env.reconcile("--dry-run")
        assert rc == 3, "a dry run sends nothing, so the gaps stay"
        assert preview["backfill"]["dry_run"] and preview["backfill"]["would_send"] == len(lost)
        assert env.ingested()["requests"] == 0 and not env.ledger_batches()

        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        b = done["backfill"]
        assert (b["sent"], b["acknowledged"], b["failed"], b["in_doubt"], b["remaining"]) == (len(lost), len(lost),
                                                                                              0, 0, 0)
        per_stream = {s["stream"]: s["backfill"] for s in done["streams"]}
        assert sum(x["acknowledged"] for x in per_stream.values()) == len(lost)
        counts = env.ingested_counts()
        assert set(counts) == lost and set(counts.values()) == {1}, "every lost record written exactly once"

        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after)

        requests = env.ingested()["requests"]
        rc, again = env.reconcile("--backfill")
        assert rc == 0 and again["backfill"]["sent"] == 0
        assert env.ingested()["requests"] == requests, "a second backfill sends nothing"


HIDDEN = {  # backfill somewhere the reconcile does not look, so the ids stay "missing" to it
    "sentinel": '[siem.streams."graph.directory_audits"]\nbackfill_tables = ["Hidden_CL"]\n'
                'dcr_stream = "Custom-AuditLogs_Backfill_CL"\n',
    "elastic": '[siem.streams."graph.directory_audits"]\nbackfill_index = "hidden-backfill"\n',
}


@pytest.mark.parametrize("siem", sorted(HIDDEN))
def test_the_ledger_alone_prevents_a_resend(tmp_path, siem):
    """A SIEM slow to show what it acknowledged: the reconcile still lists the ids, the ledger skips them."""
    with backfill_env(tmp_path, siem, tail=HIDDEN[siem]) as env:
        _rc, first = env.reconcile("--backfill")
        audits = next(s for s in first["streams"] if s["stream"] == "graph.directory_audits")
        n = len(audits["missing_in_siem"])
        assert n and audits["backfill"]["acknowledged"] == n
        requests = env.ingested()["requests"]

        _rc, again = env.reconcile("--backfill")
        audits = next(s for s in again["streams"] if s["stream"] == "graph.directory_audits")
        assert len(audits["missing_in_siem"]) == n, "the reconcile cannot see the hidden backfill"
        assert audits["backfill"]["already_acknowledged"] == n and audits["backfill"]["sent"] == 0
        assert env.ingested()["requests"] == requests
        assert set(env.ingested_counts().values()) == {1}


@pytest.mark.parametrize("siem", SIEMS)
def test_sigkill_mid_backfill_then_rerun_leaves_each_record_once(tmp_path, siem):
    slow = {"backfill_batch_records": 5, "backfill_rate": 5}  # ~130 records: ~26 batches, ~5 s
    with backfill_env(tmp_path, siem, config=slow) as env:
        lost = env.lost()
        proc = env.start_reconcile("--backfill")
        deadline = time.monotonic() + 120
        while len(env.ledger_batches()) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the backfill finished before it could be killed; slow it down"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        partial = env.ingested_counts()
        assert 0 < len(partial) < len(lost)

        rc, done = env.reconcile("--backfill")
        assert rc == 0, done["backfill"]
        b = done["backfill"]
        assert b["missing"] == len(lost - set(partial)), "what the killed run stored is visible to the reconcile"
        assert b["already_acknowledged"] + b["acknowledged"] + b["already_present"] == b["missing"]
        counts = env.ingested_counts()
        assert set(counts) == lost, "every missing record reached the SIEM"
        assert [i for i, n in counts.items() if n != 1] == [], "and none twice"

        rc, after = env.reconcile()
        assert rc == 0 and not missing(after) and not duplicates(after)
