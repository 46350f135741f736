"""Fault-matrix fixtures: the o365 fake Management API, and `outcome` to report what a test saw.

Every test reports the outcome it observed for its matrix row; the observed outcome must be the
documented one. With FAULT_MATRIX_RESULTS=path set, all observations are written there as JSON at
the end of the session (`python -m tests.faults.render path` renders docs/reliability.md from it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.matrix import BY_KEY
from tests.sources.management_activity.conftest import ca, cfg_overrides, env, fake  # noqa: F401 - fixtures reused by the matrix

_OBSERVED: dict[str, str] = {}


@pytest.fixture
def outcome() -> Callable[[str, str], None]:
    def report(key: str, seen: str) -> None:
        assert key in BY_KEY, f"{key} is not a row of tests/faults/matrix.py"
        _OBSERVED[key] = seen
        assert seen == BY_KEY[key].outcome, f"{key}: observed {seen!r}, documented {BY_KEY[key].outcome!r}"

    return report


@pytest.fixture(scope="session", autouse=True)
def _write_results() -> Iterator[None]:
    yield
    target = os.environ.get("FAULT_MATRIX_RESULTS")
    if target and _OBSERVED:
        Path(target).write_text(json.dumps(_OBSERVED, indent=1, sort_keys=True))
