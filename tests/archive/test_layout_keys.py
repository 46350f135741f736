"""The archive owns its keys: `agent/archive/layout.py` spells every object key, `_meta/` included.

Two halves. The golden keys pin the bytes of every key the layout builds (a key once written is
read back by later versions, so a changed byte is a data migration). The scan walks every module
of `agent/` and fails on any string or f-string outside layout.py that spells a key fragment,
so a new key cannot be built in a second place.
"""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.archive import layout
from agent.archive.layout import Partition

T, S = "t1", "graph.sign_ins"
HOUR = datetime(2026, 3, 4, 5, tzinfo=UTC)
PART = Partition(T, S, HOUR)
P = "tenant=t1/stream=graph.sign_ins/date=2026-03-04/hour=05/"
SHA = "ab" * 32


@pytest.mark.parametrize(("built", "expected"), [
    (PART.prefix, P),
    (PART.segment_key("s1"), f"{P}s1.ndjson.zst"),
    (PART.sidecar_key("s1"), f"_meta/index/{P}s1.json"),
    (PART.intents_prefix, f"_meta/intents/{P}"),
    (layout.intent_key(PART, "s1"), f"_meta/intents/{P}s1.json"),
    (layout.segment_quarantine_key(PART, "s1"), f"_meta/quarantine/segments/{P}s1.json"),
    (layout.segment_quarantine_prefix(), "_meta/quarantine/segments/"),
    (layout.segment_quarantine_prefix(T), "_meta/quarantine/segments/tenant=t1/"),
    (layout.segment_quarantine_prefix(T, S), "_meta/quarantine/segments/tenant=t1/stream=graph.sign_ins/"),
    (layout.quarantined_segment(f"_meta/quarantine/segments/{P}s1.json"), f"{P}s1.ndjson.zst"),
    (layout.record_quarantine_key(T, S, SHA, layout.SEGMENT_SUFFIX),
     f"_meta/quarantine/tenant=t1/stream=graph.sign_ins/{SHA}.ndjson.zst"),
    (layout.record_quarantine_key(T, S, SHA, layout.RAW_SUFFIX),
     f"_meta/quarantine/tenant=t1/stream=graph.sign_ins/{SHA}.raw.zst"),
    (layout.tenant_prefix(T), "tenant=t1/"),
    (layout.stream_prefix(T, S), "tenant=t1/stream=graph.sign_ins/"),
    (layout.records_prefix(), "tenant="),
    (layout.records_prefix(None, S), "tenant="),
    (layout.records_prefix(T), "tenant=t1/"),
    (layout.sidecars_prefix(), "_meta/index/tenant="),
    (layout.sidecars_prefix(T, S), "_meta/index/tenant=t1/stream=graph.sign_ins/"),
    (layout.intents_prefix(T), "_meta/intents/tenant=t1/"),
    (layout.manifest_prefix(), "_meta/manifests/"),
    (layout.manifest_prefix(T), "_meta/manifests/tenant=t1/"),
    (layout.manifest_key(T, S, 7), "_meta/manifests/tenant=t1/stream=graph.sign_ins/000000000007.json"),
    (layout.id_index_prefix(T, S), "_meta/ids/tenant=t1/stream=graph.sign_ins/"),
    (layout.id_index_object_key(T, S, 3, "x"), "_meta/ids/tenant=t1/stream=graph.sign_ins/L3-x.bin"),
    (layout.id_index_built_key(T, S), "_meta/ids/tenant=t1/stream=graph.sign_ins/built"),
    (layout.checkpoints_prefix(), "_meta/checkpoints/"),
    (layout.checkpoint_key(T, S), "_meta/checkpoints/tenant=t1/stream=graph.sign_ins.json"),
    (layout.status_key(T, S), "_meta/status/tenant=t1/stream=graph.sign_ins.json"),
    (layout.siem_state_key(T, S), "_meta/status/tenant=t1/stream=graph.sign_ins.siem.json"),
    (layout.lease_prefix(T), "_meta/lock/tenant=t1/"),
    (layout.lease_key(T, 12, "renew"), "_meta/lock/tenant=t1/000000000012.renew"),
    (layout.ledger_prefix(T, S), "_meta/ledger/tenant=t1/stream=graph.sign_ins/"),
    (layout.ledger_window_key(T, S, HOUR, HOUR.replace(hour=6)),
     "_meta/ledger/tenant=t1/stream=graph.sign_ins/20260304T050000Z_20260304T060000Z.json"),
    (layout.ledger_fetched_key(T, S), "_meta/ledger/tenant=t1/stream=graph.sign_ins/fetched.json"),
    (layout.backfill_ledger_prefix("splunk-0123456789ab", T, S),
     "_meta/backfill/target=splunk-0123456789ab/tenant=t1/stream=graph.sign_ins/"),
    (layout.backfill_batch_key("splunk-0123456789ab", T, S, "b1"),
     "_meta/backfill/target=splunk-0123456789ab/tenant=t1/stream=graph.sign_ins/b1.json"),
    (layout.provenance_key(T, S, "2026-03-04T05:00:00Z", "2026-03-04T06:00:00Z"),
     "_meta/provenance/tenant=t1/stream=graph.sign_ins/2026-03-04T050000Z_2026-03-04T060000Z.json"),
    (layout.alerts_sent_key((0, 1)), "_meta/alerts/sent.json"),
    (layout.alerts_sent_key((1, 3)), "_meta/alerts/sent-shard1of3.json"),
    (layout.ALERTS_PREFIX, "_meta/alerts/"),
    (layout.probe_key("abc"), "_meta/probes/check-abc"),
    (layout.heads_prefix(), "heads/"),
    (layout.heads_prefix(T), "heads/tenant=t1/"),
    (layout.heads_prefix(None, S), "heads/"),
    (layout.heads_prefix(T, S), "heads/tenant=t1/stream=graph.sign_ins/"),
    (layout.head_key(T, S, 2, SHA, 40), f"heads/tenant=t1/stream=graph.sign_ins/000000000002.{SHA}.40.json"),
])
def test_every_key_keeps_its_bytes(built: str, expected: str) -> None:
    assert built == expected


def test_parsers_invert_their_builders_and_refuse_other_keys() -> None:
    assert layout.parse_manifest_key(layout.manifest_key(T, S, 7)) == (T, S, 7)
    assert layout.parse_manifest_key(layout.manifest_key(T, S, 7) + ".bak") is None
    assert layout.parse_checkpoint_key(layout.checkpoint_key(T, S)) == (T, S)
    assert layout.parse_checkpoint_key(layout.status_key(T, S)) is None
    assert layout.parse_id_index_level(layout.id_index_object_key(T, S, 9, "n")) == 9
    assert layout.parse_id_index_level(layout.id_index_built_key(T, S)) is None
    assert layout.parse_lease_key(layout.lease_key(T, 12, "released")) == (12, "released")
    assert layout.parse_lease_key(f"{layout.lease_prefix(T)}notes.txt") is None
    assert layout.parse_head_key(layout.head_key(T, S, 2, SHA, 40)) == (T, S, 2, SHA, 40)
    assert layout.parse_head_key(layout.head_key(T, S, 2, "z" * 64, 40)) is None
    assert layout.key_in_stream(layout.sidecars_prefix(T, S), S)
    assert not layout.key_in_stream(layout.sidecars_prefix(T, S), "graph")


# ------------------------------------------------------------------------- one owner of keys
AGENT = Path(__file__).resolve().parents[2] / "agent"
OWNER = AGENT / "archive" / "layout.py"
# A path segment naming a partition, followed by a value (not prose such as "tenant=/stream=").
_FRAGMENT = re.compile(r"(?:^|/)(?:tenant|stream|date|hour|target)=(?![/)\s])")
_FRAGMENT_BEFORE_VALUE = re.compile(r"(?:^|/)(?:tenant|stream|date|hour|target)=$")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def key_spellings(source: str, name: str) -> list[str]:
    """Every place in one module's source that spells an object key or a piece of one."""
    tree = ast.parse(source, filename=name)
    docs, out = _docstrings(tree), []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.JoinedStr):  # f"...tenant={t}..." builds a key
            parts = node.values
            for part, after in zip(parts, [*parts[1:], None], strict=True):
                if (isinstance(part, ast.Constant) and isinstance(part.value, str)
                        and isinstance(after, ast.FormattedValue) and _FRAGMENT_BEFORE_VALUE.search(part.value)):
                    out.append(f"{where}: f-string builds a key: {part.value!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            text = node.value
            if ("_meta" in text and re.search(r"(?:^|/)_meta(?:/|$)", text)) or _FRAGMENT.search(text) \
                    or text.startswith("heads/") or layout.SEGMENT_SUFFIX in text:
                out.append(f"{where}: key fragment {text[:60]!r}")
        elif isinstance(node, ast.ImportFrom) and node.module == "agent.archive.layout" \
                and any(a.name == "META" for a in node.names):
            out.append(f"{where}: imports META to build a key")
        elif isinstance(node, ast.Attribute) and node.attr == "META" and isinstance(node.value, ast.Name) \
                and node.value.id == "layout":
            out.append(f"{where}: layout.META builds a key")
    return out


def test_no_module_but_layout_spells_an_object_key() -> None:
    offenders = [hit for path in sorted(AGENT.rglob("*.py")) if path != OWNER
                 for hit in key_spellings(path.read_text(), str(path.relative_to(AGENT.parent)))]
    assert offenders == [], "object keys belong in agent/archive/layout.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("source", [
    'KEY = f"_meta/probes/check-{token}"',
    'prefix = f"{META}/ledger/tenant={tenant}/stream={stream}/"',
    'prefix = f"{root}/target={t}/"',
    'from agent.archive.layout import META',
    'key = f"{layout.META}/x"',
    'RE = re.compile(r"^heads/tenant=(?P<tenant>[^/]+)/")',
    'name = key + ".ndjson.zst"',
    'scope = "tenant="',
])
def test_the_scan_sees_each_way_a_key_was_spelled(source: str) -> None:
    assert key_spellings(source, "probe.py"), source


@pytest.mark.parametrize("source", [
    'print(f"  chain       tenant={b.tenant} stream={b.stream} seq {b.seq}")',
    'print(" (zstd NDJSON, hive layout: tenant=/stream=/date=/hour=)")',
    'def f():\n    """Kept under `_meta/intents/`."""',
    'metric = "agent_segments_quarantined"',
])
def test_the_scan_lets_prose_be(source: str) -> None:
    assert key_spellings(source, "probe.py") == []
