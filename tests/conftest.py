"""Shared fixtures. The environment is isolated so the machine's proxy, CA and cloud variables
cannot change what a test sees (they do on CI: REQUESTS_CA_BUNDLE and AWS_CA_BUNDLE are set)."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
