"""Each adapter against its emulated SIEM over HTTPS: reconcile finds exactly the injected truth.

The archive is written with `Archive.write` from the same generated entries the emulated SIEM
serves (see fixtures.py); the expected answer comes from the entries' own flags.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from agent.reconcile.diff import US, floor_to, merge_gaps
from agent.reconcile.engine import Options, reconcile
from agent.reconcile.report import ReconcileReport
from emulator.siems import elastic as elastic_emu
from emulator.siems import loganalytics as la_emu
from emulator.siems.siem_copy import SiemPlan
from tests.siem.fixtures import OTHER_TENANT, TENANT, Entry, Gap, Scenario, make_record, ticks_of
from tests.siem.harness import KINDS, running

END = datetime(2026, 3, 2, tzinfo=UTC)
START = END - timedelta(hours=24)
NOW = END + timedelta(hours=8)


def h(n: float) -> datetime:
    return START + timedelta(hours=n)


def mixed_scenario(plan: SiemPlan | None = None) -> Scenario:
    """Every gap kind at once, on disjoint hours so no bucket hides a loss behind a hole."""
    return Scenario(START, END, {
        "graph.signins.interactive": 1200, "graph.signins.noninteractive": 500, "graph.directory_audits": 400,
        "o365.exchange": 500, "o365.sharepoint": 300, "o365.dlp_all": 150,
    }, gaps=[
        Gap("graph.signins.interactive", h(3), h(6)),  # a whole block, one stream
        Gap("*", h(10), h(22), 0.03),  # scattered random loss, every stream
        Gap("*", h(14), h(15)),  # a block on every stream
        Gap("o365.exchange", h(7), h(9), side="agent"),  # records the agent missed
        Gap("graph.directory_audits", h(1), h(2), 0.3, side="agent"),
    ], plan=plan or SiemPlan(duplicate_fraction=0.01)).generate()


def other_tenant_rows() -> list[tuple[str, str, list[Entry]]]:
    """Another tenant's records in the same SIEM: the tenant filter must keep them out."""
    import random

    import orjson

    rng = random.Random(99)
    out = []
    for _ in range(80):
        when = ticks_of(START) + rng.randrange(86400 * 10**7)
        rid, ticks, rec = make_record(rng, "o365.exchange", when, OTHER_TENANT)
        out.append(Entry(rid, ticks, orjson.dumps(rec)))
    return [(OTHER_TENANT, "o365.exchange", out)]


def expected_gaps(scn: Scenario, stream: str) -> list[tuple[int, int, int]]:
    size = 3600 * US
    per: dict[int, int] = {}
    for e in scn.entries[stream]:
        if e.in_agent and not e.in_siem:
            b = floor_to(e.ticks // 10, size)
            per[b] = per.get(b, 0) + 1
    return [(g.start, g.end, g.missing) for g in merge_gaps(per, size)]


def check_exact(kind: str, scn: Scenario, report: ReconcileReport, copy: object) -> None:
    assert not report.skipped and report.complete
    for s in report.streams:
        exp = scn.expected(s.stream, copy)  # type: ignore[arg-type]
        if kind == "elastic" and s.stream.startswith("o365."):
            exp["duplicates_in_siem"] = set()  # the o365 integration's fingerprint _id overwrites duplicates
        assert s.missing_in_siem == exp["missing_in_siem"], s.stream
        assert s.missing_in_agent == exp["missing_in_agent"], s.stream
        assert set(s.duplicates_in_siem) == exp["duplicates_in_siem"], s.stream
        assert [(g.start, g.end, g.missing) for g in s.gaps] == expected_gaps(scn, s.stream), s.stream
        assert s.agent_count == sum(e.in_agent for e in scn.entries[s.stream])
        assert s.missing_in_siem, "every stream of the mixed scenario has injected loss"


@pytest.mark.parametrize("kind", KINDS)
async def test_every_gap_kind_is_found_exactly(kind: str, tmp_path: Path) -> None:
    scn = mixed_scenario()
    copy = scn.copy(other_tenant_rows())
    archive = await scn.archive(tmp_path / "store")
    async with running(kind, copy, tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, s) for s in scn.entries], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW, siem_name=kind)
    check_exact(kind, scn, report, copy)
    assert report.has_gaps
    # counts first: ids were fetched only for buckets whose counts differ
    buckets = 24
    for s in report.streams:
        differing = sum(1 for b in s.buckets if b.agent != b.siem) + len(s.duplicates_in_siem)
        assert s.queries <= buckets + 4 * max(1, differing)


@pytest.mark.parametrize("kind", KINDS)
async def test_no_gaps_means_no_id_queries(kind: str, tmp_path: Path) -> None:
    scn = Scenario(START, END, {"graph.signins.interactive": 300, "o365.sharepoint": 200}).generate()
    archive = await scn.archive(tmp_path / "store")
    async with running(kind, scn.copy(), tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, s) for s in scn.entries], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW)
    assert not report.has_gaps
    assert all(s.queries == 1 for s in report.streams)  # one aggregation query per stream and window
    assert all(s.agent_count == s.siem_count for s in report.streams)


@pytest.mark.parametrize("kind", ["sentinel", "elastic"])
async def test_bucket_larger_than_the_result_limit_is_still_exact(kind: str, tmp_path: Path) -> None:
    # 3000 records in 24 h (~125 per hour); the SIEM answers at most 40 rows (Sentinel) or pages of 25 (Elastic)
    scn = Scenario(START, END, {"graph.signins.interactive": 3000}, gaps=[
        Gap("*", h(2), h(12), 0.05), Gap("*", h(16), h(16.5))], plan=SiemPlan(max_rows=40, duplicate_fraction=0.005),
    ).generate()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    extra = {"page_size": 25} if kind == "elastic" else {}
    async with running(kind, copy, tmp_path, **extra) as r:
        # the adapter is not told the emulator's limit: partial answers must make it split, never conclude
        report = await reconcile(None, archive, r.siem, [(TENANT, "graph.signins.interactive")], START, END,
                                 options=Options(settle=timedelta(hours=1), max_rows=500_000), now=NOW)
        if kind == "elastic":
            assert not r.app[elastic_emu.STATE].pits, "every point in time was closed"
            assert r.app[elastic_emu.STATE].searches > 30, "ids were paged with search_after"
        else:
            assert r.app[la_emu.STATE].partials > 0, "the row limit was really hit"
    check_exact(kind, scn, report, copy)


async def test_sentinel_splits_before_querying_when_the_limit_is_known(tmp_path: Path) -> None:
    scn = Scenario(START, END, {"graph.signins.interactive": 3000}, gaps=[Gap("*", h(2), h(12), 0.05)],
                   plan=SiemPlan(max_rows=40)).generate()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    async with running("sentinel", copy, tmp_path, max_rows=40) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, "graph.signins.interactive")], START, END,
                                 options=Options(settle=timedelta(hours=1), max_rows=40), now=NOW)
    check_exact("sentinel", scn, report, copy)


async def test_sentinel_survives_throttling(tmp_path: Path) -> None:
    scn = Scenario(START, END, {"graph.directory_audits": 300}, gaps=[Gap("*", h(5), h(6))],
                   plan=SiemPlan(throttle=0.3)).generate()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    async with running("sentinel", copy, tmp_path, max_attempts=12) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, "graph.directory_audits")], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW)
    check_exact("sentinel", scn, report, copy)


async def test_unsettled_window_is_skipped(tmp_path: Path) -> None:
    scn = Scenario(START, END, {"graph.signins.interactive": 100}).generate()
    archive = await scn.archive(tmp_path / "store")
    async with running("sentinel", scn.copy(), tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, "graph.signins.interactive")], START, END,
                                 options=Options(settle=timedelta(hours=6)), now=END + timedelta(hours=2))
    assert report.skipped
    assert report.until == floor_to(ticks_of(END - timedelta(hours=4)) // 10, 3600 * US)


async def test_splunk_falls_back_to_v1_export(tmp_path: Path) -> None:
    from emulator.siems import splunk as splunk_emu
    from tests.siem import harness

    scn = Scenario(START, END, {"o365.exchange": 200}, gaps=[Gap("*", h(1), h(2))]).generate()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    original = harness.emulator_app
    harness.emulator_app = lambda kind, c: splunk_emu.app(c, token=harness.SPLUNK_TOKEN, v2=False)  # type: ignore[assignment]
    try:
        async with running("splunk", copy, tmp_path) as r:
            report = await reconcile(None, archive, r.siem, [(TENANT, "o365.exchange")], START, END,
                                     options=Options(settle=timedelta(hours=1)), now=NOW)
    finally:
        harness.emulator_app = original  # type: ignore[assignment]
    check_exact("splunk", scn, report, copy)


@pytest.mark.parametrize("kind", KINDS)
async def test_differing_buckets_are_narrowed_by_counts_before_ids(kind: str, tmp_path: Path) -> None:
    scn = mixed_scenario()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    async with running(kind, copy, tmp_path) as r:
        report = await reconcile(None, archive, r.siem, [(TENANT, s) for s in scn.entries], START, END,
                                 options=Options(settle=timedelta(hours=1), refine_rows=10), now=NOW)
    check_exact(kind, scn, report, copy)


async def test_first_reconcile_after_recollecting_names_the_gaps_the_refetched_records_reveal(
        tmp_path: Path) -> None:
    # The archive lacks hours 3-6 (the agent was down); the SIEM lost half of the same hours. Re-collection
    # fills the archive's hole from the API, which brings back the records the SIEM lacks too: the same
    # run must report them, not only the next one.
    stream = "graph.signins.interactive"
    scn = Scenario(START, END, {stream: 600}, gaps=[Gap(stream, h(3), h(6), side="agent"),
                                                    Gap(stream, h(3), h(6), 0.5)]).generate()
    copy = scn.copy()
    archive = await scn.archive(tmp_path / "store")
    api = scn.entries[stream]  # what the API still serves: every record

    async def recollect(tenant: str, name: str, start: datetime, end: datetime) -> object:
        window = [orjson.loads(e.body) for e in api if ticks_of(start) <= e.ticks < ticks_of(end)]
        return await archive.write(tenant, name, window)

    lost = {e.id for e in api if not e.in_siem}
    assert lost
    async with running("sentinel", copy, tmp_path) as r:
        first = await reconcile(None, archive, r.siem, [(TENANT, stream)], START, END,
                                options=Options(settle=timedelta(hours=1)), now=NOW, recollect=recollect)
        second = await reconcile(None, archive, r.siem, [(TENANT, stream)], START, END,
                                 options=Options(settle=timedelta(hours=1)), now=NOW, recollect=recollect)
    s = first.streams[0]
    assert s.recollected == {e.id for e in api if e.in_siem and not e.in_agent}
    assert s.missing_in_siem == lost == second.streams[0].missing_in_siem
    assert not s.missing_in_agent
    assert s.agent_count == len(api) and first.has_gaps
    assert sum(g.missing for g in s.gaps) == len(lost)
