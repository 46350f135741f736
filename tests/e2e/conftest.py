"""Fixtures for the end-to-end proofs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import emulator_fixture


@pytest.fixture(autouse=True)
def _emulator_under_own_name(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start the emulator as `-m tests.e2e.witness` (same code; see witness.py for why)."""
    real = subprocess.Popen

    def popen(args: Any, *a: Any, **kw: Any) -> Any:
        if isinstance(args, list) and args[1:3] == ["-m", "emulator"]:
            args = [args[0], "-m", "tests.e2e.witness", *args[3:]]
        return real(args, *a, **kw)

    monkeypatch.setattr(emulator_fixture.subprocess, "Popen", popen)
    yield
