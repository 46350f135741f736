"""Corpus conformance: real records from Microsoft's docs and public datasets, served by the
emulator, come back from `agent export` parsed-equal (same keys, same values). Graph records are
served byte for byte with their original times ("keep"); Management records get only their
CreationTime moved into the listable 7 days ("rebase"), and are compared with what was served."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.e2e.helpers import SHARED, edit_config, export, parse_rfc3339, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator

CORPUS = SHARED / "corpus"
GRAPH_FILES = {
    "graph.signins.interactive": CORPUS / "graph/signins/graph_docs_signins.ndjson",
    "graph.directory_audits": CORPUS / "graph/directory_audits/graph_docs_directory_audits.ndjson",
}
MANAGEMENT_DIR = CORPUS / "management_activity"
WORKLOAD_STREAM = {"Exchange": "o365.exchange", "AzureActiveDirectory": "o365.azure_active_directory"}

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not at {CORPUS} "
                                "(CI checks out shared/ beside the project)")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def first_by_id(records: list[dict[str, Any]], id_field: str) -> dict[str, dict[str, Any]]:
    """What the emulator serves (and the archive keeps) when the corpus repeats an id: one record."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        out.setdefault(r[id_field], r)
    return out


def split_management(tmp_path: Path) -> dict[str, Path]:
    """Every Management corpus file, its records grouped into the stream of their workload."""
    groups: dict[str, list[bytes]] = {}
    files = sorted(p for p in MANAGEMENT_DIR.rglob("*") if p.suffix in (".ndjson", ".json") and p.is_file())
    assert files
    for path in files:
        for line in path.read_bytes().splitlines():
            if line.strip():
                workload = orjson.loads(line).get("Workload")
                groups.setdefault(WORKLOAD_STREAM.get(workload, "o365.general"), []).append(line)
    out = {}
    for stream, lines in groups.items():
        out[stream] = tmp_path / f"corpus-{stream}.ndjson"
        out[stream].write_bytes(b"\n".join(lines) + b"\n")
    return out


def test_graph_corpus_comes_back_parsed_equal(tmp_path: Path) -> None:
    streams = "".join(f'[streams."{s}"]\ncorpus = "{p}"\ncorpus_times = "keep"\n' for s, p in GRAPH_FILES.items())
    scenario = f'seed = 61\nstart = "-2h"\nend = "-10m"\n[tenant]\n{streams}[quota]\ngraph_requests_per_10s = 0\n'
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)):
        # The doc samples are from 2018-2022: one window reaching back that far.
        edit_config(cfg, "collection", window="4000d", initial_lookback="4000d")
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-2000:]
        for stream, path in GRAPH_FILES.items():
            want = first_by_id(_lines(path), "id")
            got = export(cfg_with_stream(cfg, stream))
            assert len(got) == len(want), (stream, len(got), len(want))
            assert {r["id"]: r for r in got} == want, stream


def cfg_with_stream(cfg: Path, stream: str) -> Path:
    """A copy of the config collecting only `stream`, so `agent export` returns just its records."""
    text = cfg.read_text()
    out = cfg.with_name(f"only-{stream}.toml")
    out.write_text(re.sub(r"^streams = \[.*\]$", f'streams = ["{stream}"]', text, flags=re.M))
    return out


def test_management_corpus_comes_back_parsed_equal(tmp_path: Path) -> None:
    corpora = split_management(tmp_path)
    streams = "".join(f'[streams."{s}"]\ncorpus = "{p}"\ncorpus_times = "rebase"\n' for s, p in corpora.items())
    scenario = (f'seed = 62\nstart = "-30m"\nend = "-10m"\n[tenant]\n{streams}'
                '[management]\ncontent_delay = ["1m", "2m"]\nstraggler_fraction = 0.0\n'
                '[quota]\nmanagement_requests_per_minute = 0\n')
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)) as emu:
        edit_config(cfg, "collection", initial_lookback="2h")
        truth = {(t["stream"], t["id"]): t for t in emu.truth()}
        now = datetime.now(UTC)
        assert all(parse_rfc3339(t["visible_at"]) <= now for t in truth.values())
        proc = run_agent(["collect", "--once", "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-2000:]
        total = 0
        for stream, path in corpora.items():
            want = first_by_id(_lines(path), "Id")
            got = {r["Id"]: r for r in export(cfg_with_stream(cfg, stream))}
            assert set(got) == set(want), stream
            for rid, record in got.items():
                served_time = record["CreationTime"]
                # Only the time field was moved (by the emulator, into the listable span) ...
                assert {k: v for k, v in record.items() if k != "CreationTime"} == \
                       {k: v for k, v in want[rid].items() if k != "CreationTime"}, rid
                # ... and it is the emulator's event time, in the API's format (no zone, no fraction).
                assert parse_rfc3339(truth[(stream, rid)]["event_time"]).replace(microsecond=0) == \
                       datetime.fromisoformat(served_time).replace(tzinfo=UTC)
                assert served_time != want[rid]["CreationTime"]
                total += 1
        assert total == sum(len(first_by_id(_lines(p), "Id")) for p in corpora.values())
