"""Silence baseline (agent/service/silence.py): the same hour on earlier days, or the recent hours on a new
install; a Poisson lower bound so quiet streams can be judged and tiny ones are not false alarms."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.archive.archive import Archive
from agent.service import silence
from agent.service.silence import is_silent
from agent.store.local import LocalStore

NOW = datetime(2026, 11, 28, 12, 40, tzinfo=UTC)
LAST = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)  # the last settled hour of a Graph stream at NOW
STREAM = "graph.directory_audits"


async def _fill(archive: Archive, hours: list[datetime], per_hour: int) -> None:
    await archive.write("t", STREAM, [
        {"id": f"Directory_{h:%m%d%H}_{i}", "activityDateTime": (h + timedelta(minutes=i % 60)).isoformat()}
        for h in hours for i in range(per_hour)])


async def test_a_quiet_stream_that_stops_is_silent(tmp_path: Path) -> None:
    """~14 directory audits an hour, then none: the old check skipped baselines under 20 records."""
    archive = Archive(LocalStore(tmp_path))
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(1, 24 * 3 + 1)], 14)
    assert await is_silent(archive, "t", STREAM, NOW, 0.1)
    verdict = await silence.check(archive, "t", STREAM, LAST, 0.1)
    assert verdict.silent and verdict.seen == 0 and verdict.expected == 14
    assert "0 records in the hour from 2026-11-28 11:00Z, expected about 14" in verdict.describe()
    assert "same hour on 3 earlier days" in verdict.basis


async def test_a_new_install_can_detect_silence_on_its_first_day(tmp_path: Path) -> None:
    """12 hours of history, no earlier days: the recent hours are the baseline (the old check needed
    the same hour on about 4 of the previous 7 days)."""
    archive = Archive(LocalStore(tmp_path))
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(1, 13)], 14)
    verdict = await silence.check(archive, "t", STREAM, LAST, 0.1)
    assert verdict.silent and verdict.basis == "10th percentile of the 12 hours before"


async def test_too_little_history_is_never_called_silent(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(1, 6)], 50)
    verdict = await silence.check(archive, "t", STREAM, LAST, 0.1)
    assert not verdict.silent and verdict.expected is None and "not enough history" in verdict.basis


async def test_a_tiny_stream_with_an_empty_hour_is_not_a_false_alarm(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(1, 24 * 7 + 1)], 2)
    verdict = await silence.check(archive, "t", STREAM, LAST, 0.1)
    assert not verdict.silent and verdict.expected == 2 and verdict.chance == pytest.approx(math.exp(-2))


async def test_a_quiet_night_after_a_busy_first_day_is_not_silent(tmp_path: Path) -> None:
    archive = Archive(LocalStore(tmp_path))
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(4, 16)], 100)  # the working day
    await _fill(archive, [LAST - timedelta(hours=n) for n in range(1, 4)], 10)  # the evening
    await _fill(archive, [LAST], 8)
    assert not (await silence.check(archive, "t", STREAM, LAST, 0.1)).silent


def test_poisson_lower_bound() -> None:
    assert silence.poisson_cdf(0, 14) == pytest.approx(math.exp(-14))
    assert silence.poisson_cdf(1, 3) == pytest.approx(4 * math.exp(-3))
    assert silence.poisson_cdf(5_000, 100_000) < 1e-300 or silence.poisson_cdf(5_000, 100_000) == 0.0
    assert silence.poisson_cdf(3, 0) == 1.0
