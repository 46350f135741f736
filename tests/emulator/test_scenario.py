"""Scenario parsing (contract 7) and seeded determinism, in process."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from emulator.world import dataset, scenario, scenario_parse
from emulator.world.clock import TICKS_PER_SECOND, parse_iso

ORIGIN = parse_iso("2026-11-01T12:00:00Z")

CONTRACT_EXAMPLE = """
seed = 7
start = "-48h"
end = "-10m"
[tenant]
id = "6f1c0000-0000-4000-8000-000000000001"
license = "p2"
[streams."graph.signins.interactive"]
records = 200
duplicate_fraction = 0.01
late_fraction = 0.02
late_window = "15m"
late_delay = "20s"
[faults]
throttle = 0.05
server_error = 0.02
reset = 0.01
truncated = 0.005
html_error = 0.005
token_expiry = 0.001
empty_page = 0.01
[quota]
graph_requests_per_10s = 5
management_requests_per_minute = 2000
[[siem.gaps]]
stream = "graph.signins.interactive"
start = "-30h"
end = "-27h"
drop_fraction = 1.0
"""


def parse(text: str) -> scenario.Scenario:
    return scenario_parse.parse(tomllib.loads(text), ORIGIN)


def test_contract_example_parses_as_written() -> None:
    s = parse(CONTRACT_EXAMPLE)
    assert s.seed == 7
    assert s.start == ORIGIN - 48 * 3600 * TICKS_PER_SECOND
    assert s.end == ORIGIN - 600 * TICKS_PER_SECOND
    (t,) = s.tenants
    assert t.license == "p2"
    plan = t.streams["graph.signins.interactive"]
    assert (plan.records, plan.late_window, plan.late_delay) == (
        200,
        900 * TICKS_PER_SECOND,
        20 * TICKS_PER_SECOND,
    )
    assert s.faults.throttle == 0.05 and s.quota.graph_requests_per_10s == 5
    assert s.siem_gaps[0].drop_fraction == 1.0


def test_absolute_times() -> None:
    s = parse('start = "2026-10-30T00:00:00Z"\nend = "2026-10-31T00:00:00Z"\n[tenant]\n')
    assert s.start == parse_iso("2026-10-30T00:00:00Z")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1\n[tenant]\n", "unknown key: bogus"),
        ('[tenant]\nlicense = "e5"\n', "tenant.license"),
        ('[tenant]\n[streams."graph.nope"]\n', "unknown stream 'graph.nope'"),
        ('[tenant]\n[streams."o365.exchange"]\nrecords = 5\nduplicates = 0.1\n', "duplicates"),
        ('[tenant]\n[streams."o365.exchange"]\nduplicate_fraction = 2\n', "not a fraction"),
        ('start = "yesterday"\n[tenant]\n', "start"),
        ('start = "-1h"\nend = "-2h"\n[tenant]\n', "end must be after start"),
        ("[tenant]\n[faults]\nthrottle = 0.7\nreset = 0.6\n", "add up to"),
        ('[tenant]\n[[siem.gaps]]\nstream = "*"\nstart = "-1h"\n', "siem.gaps[0].end is required"),
        ('[tenant]\nid = "not-a-guid"\n', "not a tenant GUID"),
        ('[tenant]\n[management]\ncontent_delay = ["5m"]\n', "content_delay"),
        (
            '[tenant]\n[[management.unavailable]]\nstream = "graph.provisioning"\nafter = "-1h"\n',
            "not a Management Activity stream",
        ),
    ],
)
def test_bad_scenarios_name_the_key(text: str, message: str) -> None:
    with pytest.raises(scenario.ScenarioError, match=re.escape(message)):
        parse(text)


def test_same_file_same_start_same_data() -> None:
    text = CONTRACT_EXAMPLE + '[streams."o365.exchange"]\nrecords = 50\nduplicate_fraction = 0.1\n'
    a, b = dataset.build(parse(text), ORIGIN), dataset.build(parse(text), ORIGIN)
    for sa, sb in zip(a.all(), b.all(), strict=True):
        assert [(e.id, e.body, e.visible, e.in_siem) for e in sa.entries] == [
            (e.id, e.body, e.visible, e.in_siem) for e in sb.entries
        ]
    c = dataset.build(parse(text.replace("seed = 7", "seed = 8")), ORIGIN)
    assert {e.id for e in c.all()[0].entries}.isdisjoint({e.id for e in a.all()[0].entries})


def test_siem_gap_drops_only_inside_the_window() -> None:
    s = parse(CONTRACT_EXAMPLE)
    data = dataset.build(s, ORIGIN)
    gap = s.siem_gaps[0]
    for e in data.all()[0].entries:
        assert e.in_siem == (not gap.start <= e.ticks < gap.end)


def test_corpus_file_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(scenario.ScenarioError, match="is not a file"):
        parse(f'[tenant]\n[streams."graph.directory_audits"]\ncorpus = "{tmp_path}/nope.ndjson"\n')


def _corpus_scenario(tmp_path: Path, lines: list[bytes], times: str = "keep") -> scenario.Scenario:
    path = tmp_path / "corpus.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return parse(f'[tenant]\n[streams."graph.directory_audits"]\ncorpus = "{path}"\ncorpus_times = "{times}"\n')


HOSTILE = [
    b'{"id":"s","activityDateTime":"2026-10-31T10:00:00Z","v":"\\ud800"}',
    b'{"id":"i","activityDateTime":"2026-10-31T10:00:00Z","v":123456789012345678901234567890}',
    b'{"id":"f","activityDateTime":"2026-10-31T10:00:00Z","v":1e400}',
    b'{"id":"d","activityDateTime":"2026-10-31T10:00:00Z","v":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"id":"n","activityDateTime":"2026-10-31T10:00:00Z","v":' + b"9" * 5000 + b"}",
]


def test_keep_corpus_serves_any_valid_json_byte_for_byte(tmp_path: Path) -> None:
    data = dataset.build(_corpus_scenario(tmp_path, HOSTILE), ORIGIN)
    [sd] = data.all()
    assert sorted(e.body for e in sd.entries) == sorted(HOSTILE)


@pytest.mark.parametrize("line", [b'{"id":"x","activityDateTime":"2026-10-31T10:00:00Z","v":NaN}',
                                  b'{"id":"x","activityDateTime":"2026-10-31T10:00:00Z",}', b"\xff"])
def test_a_corpus_line_that_is_not_json_names_file_and_line(tmp_path: Path, line: bytes) -> None:
    with pytest.raises(ValueError, match=r"corpus\.ndjson:2: not JSON"):
        dataset.build(_corpus_scenario(tmp_path, [HOSTILE[0], line]), ORIGIN)


def test_rebase_refuses_what_it_cannot_write_and_points_at_keep(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="corpus_times = \"keep\""):
        dataset.build(_corpus_scenario(tmp_path, HOSTILE[:1], "rebase"), ORIGIN)


def test_app_quota_is_on_by_default_with_several_tenants() -> None:
    """122 requests / 10 s per app across tenants (learn.microsoft.com/graph/throttling-limits)."""
    one = 'seed = 1\n[tenant]\n[streams."graph.provisioning"]\nrecords = 1\n'
    many = 'seed = 1\n[streams."graph.provisioning"]\nrecords = 1\n[[tenants]]\n[[tenants]]\n'
    assert parse(one).quota.graph_app_requests_per_10s == 0  # one tenant: 5 / 10 s binds first
    assert parse(many).quota.graph_app_requests_per_10s == 122
    assert parse(many + "[quota]\ngraph_requests_per_10s = 0\n").quota.graph_app_requests_per_10s == 0
    assert parse(many + "[quota]\ngraph_app_requests_per_10s = 7\n").quota.graph_app_requests_per_10s == 7
