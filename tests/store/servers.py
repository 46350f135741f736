"""S3 servers on loopback for tests: SeaweedFS (real S3 semantics, incl. Object Lock) and helpers.

SeaweedFS can be stopped and started again on the same ports and data directory, which is how the
spool tests simulate an S3 outage. The fixtures live in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from agent.config import S3StoreConfig

ACCESS_KEY = SECRET_KEY = "testing"
REGION = "us-east-1"


@contextlib.contextmanager
def isolated_aws_env() -> Iterator[None]:
    """Hide the machine's AWS_* settings (AWS_CA_BUNDLE is set here, ~/.aws may exist) from boto3.

    Test credentials go through the environment, so the stores under test still use boto3's normal
    credential chain; IMDS is disabled so a missing key fails fast instead of probing the network.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client for test setup and for asserting what the server really holds."""
    with isolated_aws_env():
        return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                                          connect_timeout=1, read_timeout=10))


def store_config(endpoint: str, bucket: str, **overrides: Any) -> S3StoreConfig:
    """Store settings for tests: path style, one attempt, short timeouts (outages show at once)."""
    base: dict[str, Any] = {"bucket": bucket, "endpoint_url": endpoint, "region": REGION,
                            "addressing_style": "path", "max_attempts": 1,
                            "connect_timeout": timedelta(seconds=1), "read_timeout": timedelta(seconds=10)}
    base.update(overrides)
    return S3StoreConfig(**base)


def new_bucket(client: Any, *, lock: bool = False) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    if lock:
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        client.create_bucket(Bucket=name)
    return name


def _free_http_port() -> int:
    """weed also binds port+10000 for gRPC, so both must be free."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 < 65536:
            try:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                pass


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class Weed:
    """One `weed mini` process; stop()/start() keep ports and data, like a real outage."""

    binary: str
    data_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: {k: _free_http_port() for k in
                                                            ("master", "volume", "filer", "s3", "admin")})
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def client(self) -> Any:
        return s3_client(self.endpoint)

    def _command(self) -> list[str]:
        # Both -ip flags: the defaults are 192.0.2.2 and 0.0.0.0. Telemetry is on by default.
        p = self.ports
        return [self.binary, "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
                f"-s3.port={p['s3']}", f"-admin.port={p['admin']}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                # every bucket is a collection with its own volumes: allow many small ones
                "-volume.max=0", "-master.volumeSizeLimitMB=64"]

    def start(self, timeout: float = 30) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        log = (self.data_dir / "weed.log").open("ab")
        self.proc = subprocess.Popen(self._command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready = a signed write succeeds (the S3 port opens before the filer can store)."""
        client, t0 = self.client, time.monotonic()
        while True:
            try:
                with contextlib.suppress(ClientError):
                    client.create_bucket(Bucket="ready-probe")
                client.put_object(Bucket="ready-probe", Key="k", Body=b"x")
                return
            except (ClientError, BotoCoreError) as exc:
                assert self.proc is not None
                if self.proc.poll() is not None or time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"weed did not start, see {self.data_dir}/weed.log") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """S3 is down inside the block and back (same data) after it, even if the test fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()


