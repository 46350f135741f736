"""Reading a segment is all or nothing: a cut, a flipped byte or a half line raises DamagedSegment
naming the segment, never a shorter list of records."""

from __future__ import annotations

from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.archive import codec
from agent.archive.archive import Archive
from agent.errors import DamagedSegment
from agent.store.local import LocalStore

RECORDS = [{"id": f"id-{i}", "createdDateTime": f"2026-03-01T10:{i % 60:02d}:00Z", "pad": "x" * (i % 50)}
           for i in range(300)]
BLOB = codec.encode(RECORDS)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=1, max_value=len(BLOB)))
def test_every_truncation_is_an_error_naming_the_segment(cut: int) -> None:
    with pytest.raises(DamagedSegment, match="seg-key"):
        list(codec.decode(BLOB[:-cut], "seg-key"))


@settings(max_examples=60, deadline=None)
@given(at=st.integers(min_value=0, max_value=len(BLOB) - 1), bit=st.integers(min_value=0, max_value=7))
def test_a_flipped_bit_is_never_a_silent_short_read(at: int, bit: int) -> None:
    damaged = bytearray(BLOB)
    damaged[at] ^= 1 << bit
    try:
        got = list(codec.decode(bytes(damaged), "seg-key"))
    except DamagedSegment as exc:
        assert "seg-key" in str(exc)
    else:  # a flip zstd cannot see (e.g. in an unused header bit) must leave every record intact
        assert got == RECORDS


def test_half_lines_and_empty_segments_are_damage() -> None:
    half = zstandard.ZstdCompressor().compress(b'{"id": "a"}\n{"id": "b", "x"')
    with pytest.raises(DamagedSegment, match="cut short"):
        list(codec.decode(half, "k"))
    with pytest.raises(DamagedSegment, match="0 bytes"):
        list(codec.decode(b"", "k"))
    garbage = zstandard.ZstdCompressor().compress(b'{"id": "a"}\nnot json\n')
    with pytest.raises(DamagedSegment, match="line 2"):
        list(codec.decode(garbage, "k"))


def test_concatenated_frames_are_read_whole() -> None:
    """zstd allows several frames in one file (e.g. a segment re-compressed in parts)."""
    assert list(codec.decode(BLOB + codec.encode(RECORDS[:3]), "k")) == RECORDS + RECORDS[:3]


async def test_archive_readers_name_the_damaged_segment(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    stream = "graph.signins.interactive"
    await archive.write("t", stream, RECORDS)
    (part,) = await archive.partitions("t", stream)
    (segment,) = tmp_path.glob("tenant=t/**/*.ndjson.zst")
    segment.write_bytes(segment.read_bytes()[:-8])
    key = segment.relative_to(tmp_path).as_posix()
    with pytest.raises(DamagedSegment, match=key):
        [r async for r in archive.records(part)]
    with pytest.raises(DamagedSegment, match=key):
        await archive.find(part, ["id-1"])
    (sidecar,) = tmp_path.glob("_meta/index/**/*.json")
    sidecar.unlink()
    with pytest.raises(DamagedSegment, match=key):
        await Archive(archive.store).partition_ids(part)
    with pytest.raises(DamagedSegment, match=key):
        await Archive(archive.store).write("t", stream, RECORDS[:1])


async def test_a_damaged_sidecar_is_named(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    await archive.write("t", "graph.signins.interactive", RECORDS[:5])
    (part,) = await archive.partitions("t", "graph.signins.interactive")
    (sidecar,) = tmp_path.glob("_meta/index/**/*.json")
    sidecar.write_bytes(sidecar.read_bytes()[:20])
    with pytest.raises(DamagedSegment, match=sidecar.name):
        await Archive(archive.store).partition_ids(part)
