"""Fixtures for the store tests: SeaweedFS once per session (about 1 s; each test makes its own
bucket), moto on port 0, and AWS environment isolation for every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.store.servers import isolated_aws_env, s3_client


@pytest.fixture(autouse=True)
def _aws_env() -> Iterator[None]:
    with isolated_aws_env():
        yield


@dataclass
class Moto:
    endpoint: str
    client: Any


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[Moto]:
    """moto's server on a free loopback port: fast, but no signature checks and Object Lock gaps."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield Moto(endpoint, s3_client(endpoint))
    finally:
        server.stop()
