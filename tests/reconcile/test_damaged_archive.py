"""A damaged segment leaves its stream unverified, naming the segment; every other stream is still compared.

Before, one truncated segment without its sidecar raised IndexError out of the whole reconcile: in
`agent run` that ended every SIEM-gap alert of the service until someone noticed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from agent.archive.archive import Archive
from agent.reconcile import Options, reconcile
from agent.store.local import LocalStore
from tests.siem.fixtures import TENANT, Gap, Scenario
from tests.siem.harness import running
from tests.siem.test_reconcile_emulated import END, NOW, START, h

DAMAGED, HEALTHY = "graph.directory_audits", "o365.exchange"


async def test_one_damaged_stream_does_not_stop_the_others(tmp_path: Path) -> None:
    scn = Scenario(START, END, {DAMAGED: 200, HEALTHY: 200}, gaps=[Gap(HEALTHY, h(4), h(6))]).generate()
    root = tmp_path / "store"
    await scn.archive(root)
    segment = sorted(root.glob(f"tenant={TENANT}/stream={DAMAGED}/date=*/hour=*/*.ndjson.zst"))[5]
    os.truncate(segment, segment.stat().st_size - 8)
    sidecar = next(root.glob(f"_meta/index/**/{segment.name.removesuffix('.ndjson.zst')}.json"))
    sidecar.unlink()
    key = segment.relative_to(root).as_posix()
    async with running("elastic", scn.copy(), tmp_path) as r:
        report = await reconcile(None, Archive(LocalStore(root)), r.siem, [(TENANT, DAMAGED), (TENANT, HEALTHY)],
                                 START, END, options=Options(settle=timedelta(hours=1)), now=NOW)
    by = {s.stream: s for s in report.streams}
    bad, good = by[DAMAGED], by[HEALTHY]
    assert not report.complete
    assert bad.unverified and key in bad.unverified[0][2] and "archive could not be read" in bad.unverified[0][2]
    assert not bad.missing_in_siem and not bad.gaps, "nothing is concluded from a stream that could not be read"
    assert good.missing_in_siem == scn.expected(HEALTHY)["missing_in_siem"] != set()
    assert not good.unverified
