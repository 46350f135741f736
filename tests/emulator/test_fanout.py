"""The emulator's fan-out of Entra events to Graph and the audit log, and `[[upstream.gaps]]`, in process."""

from __future__ import annotations

import re
import tomllib

import orjson
import pytest

from emulator.world import dataset, scenario, scenario_parse, truth
from emulator.world.clock import TICKS_PER_SECOND, parse_iso

ORIGIN = parse_iso("2026-11-01T12:00:00Z")
TENANT = "6f1c0000-0000-4000-8000-000000000001"
AUDITS, SIGNINS, AAD = "graph.directory_audits", "graph.signins.interactive", "o365.azure_active_directory"


def build(streams: dict[str, int], gaps: str = "") -> tuple[scenario.Scenario, dataset.Dataset]:
    body = "".join(f'[streams."{s}"]\nrecords = {n}\n' for s, n in streams.items())
    text = f'seed = 5\nstart = "-24h"\nend = "-10m"\n[tenant]\nid = "{TENANT}"\n{body}{gaps}'
    scn = scenario_parse.parse(tomllib.loads(text), ORIGIN)
    return scn, dataset.build(scn, ORIGIN)


def records(data: dataset.Dataset, stream: str) -> list[dict[str, object]]:
    sd = data.get(TENANT, stream)
    assert sd is not None
    return [orjson.loads(e.body) for e in sd.entries]


def test_directory_audits_fan_out_to_record_type_8_with_the_documented_mapping() -> None:
    _, data = build({AUDITS: 50, AAD: 40})
    graph = {r["correlationId"]: r for r in records(data, AUDITS)}
    ual = [r for r in records(data, AAD) if r["RecordType"] == 8]
    assert len(ual) == len(graph) == 50
    for r in ual:
        g = graph[r["InterSystemsId"]]  # InterSystemsId = Graph correlationId
        assert r["Operation"] == f"{g['activityDisplayName']}."
        assert r["CreationTime"] == str(g["activityDateTime"])[:19]  # the same second
        assert r["IntraSystemId"] != r["Id"]  # never equal on RecordType 8 (corpus)
    # the audit log's own draws keep only the record types without a Graph sibling: STS logons here
    assert {r["RecordType"] for r in records(data, AAD)} == {8, 15}


def test_interactive_signins_fan_out_to_record_type_15() -> None:
    _, data = build({SIGNINS: 30, AAD: 20, "graph.signins.noninteractive": 30})
    graph = {r["id"]: r for r in records(data, SIGNINS)}
    ual = [r for r in records(data, AAD) if r["RecordType"] == 15]
    assert {r["Id"] for r in ual} == set(graph)  # non-interactive sign-ins do not reach the audit log
    for r in ual:
        g = graph[r["Id"]]
        assert r["IntraSystemId"] == r["Id"] and r["UserKey"] == g["userId"]
        assert r["Operation"] == ("UserLoggedIn" if g["status"]["errorCode"] == 0 else "UserLoginFailed")  # type: ignore[index]


def test_without_a_sibling_pair_the_data_is_unchanged() -> None:
    _, alone = build({AAD: 40})
    _, unpaired = build({AAD: 40, "graph.signins.noninteractive": 10, "graph.provisioning": 5})
    assert records(alone, AAD) == records(unpaired, AAD)
    assert all(e.sibling is None for sd in unpaired.all() for e in sd.entries)
    rows = [orjson.loads(line) for line in truth.lines(unpaired)]
    assert all(r["upstream_lost"] is False and "sibling" not in r for r in rows)


def test_an_upstream_gap_removes_records_from_one_pipeline_only() -> None:
    gap = '[[upstream.gaps]]\nstream = "graph.directory_audits"\nstart = "-20h"\nend = "-18h"\n'
    scn, data = build({AUDITS: 200, AAD: 10}, gap)
    sd = data.get(TENANT, AUDITS)
    assert sd is not None and sd.lost
    g = scn.upstream_gaps[0]
    assert all(g.start <= e.ticks < g.end for e in sd.lost)
    assert not any(g.start <= e.ticks < g.end for e in sd.entries)  # no API serves them
    rows = {(r["stream"], r["id"]): r for r in map(orjson.loads, truth.lines(data))}
    lost = [r for r in rows.values() if r["upstream_lost"]]
    assert len(lost) == len(sd.lost)
    for r in lost:
        assert r["visible_at"] is None and r["in_siem"] is False and r["available"] is False
        kept = rows[(r["sibling"]["stream"], r["sibling"]["id"])]
        assert kept["stream"] == AAD and kept["upstream_lost"] is False and kept["available"] is True
        assert kept["sibling"] == {"stream": AUDITS, "id": r["id"]}


def test_upstream_gap_needs_one_named_stream() -> None:
    for gap, message in (
        ('[[upstream.gaps]]\nstart = "-2h"\nend = "-1h"\n', "name one stream"),
        ('[[upstream.gaps]]\nstream = "graph.nope"\nstart = "-2h"\nend = "-1h"\n', "unknown stream"),
        ('[[upstream.gaps]]\nstream = "o365.exchange"\nstart = "-2h"\nend = "-3h"\n', "end must be after"),
        ('[upstream]\nlag = 1\n', "unknown key in [upstream]: lag"),
    ):
        with pytest.raises(scenario.ScenarioError, match=re.escape(message)):
            build({AUDITS: 5}, gap)


def test_partial_drop_is_seeded() -> None:
    gap = ('[[upstream.gaps]]\nstream = "o365.azure_active_directory"\nstart = "-24h"\nend = "-1h"\n'
           'drop_fraction = 0.5\n')
    _, one = build({AUDITS: 100, AAD: 10}, gap)
    _, two = build({AUDITS: 100, AAD: 10}, gap)
    lost = [e.id for e in one.get(TENANT, AAD).lost]  # type: ignore[union-attr]
    assert lost == [e.id for e in two.get(TENANT, AAD).lost]  # type: ignore[union-attr]
    assert 20 < len(lost) < 80


def test_the_contract_example_with_an_upstream_gap_parses_as_written() -> None:
    """Contract 7's example names a gap on a stream its scenario does not serve: accepted, takes nothing."""
    from tests.emulator.test_scenario import CONTRACT_EXAMPLE

    text = CONTRACT_EXAMPLE + (
        '[[upstream.gaps]]\nstream = "o365.azure_active_directory"\nstart = "-30h"\nend = "-26h"\n'
        "drop_fraction = 1.0\n")
    scn = scenario_parse.parse(tomllib.loads(text), ORIGIN)
    (gap,) = scn.upstream_gaps
    assert (gap.stream, gap.end - gap.start, gap.drop_fraction) == (AAD, 4 * 3600 * TICKS_PER_SECOND, 1.0)
    assert not any(sd.lost for sd in dataset.build(scn, ORIGIN).all())
