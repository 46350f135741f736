"""`open_store` builds what `[store]` describes; the S3 keys are validated like every other table."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.config import LocalStoreConfig, S3StoreConfig
from agent.errors import ConfigError
from agent.store import open_store
from agent.store.base import Store
from agent.store.local import LocalStore
from agent.store.s3 import S3Store
from agent.store.spool import SpoolingStore

TENANT = {"id": "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10", "client_id": "11111111-2222-3333-4444-555555555555",
          "client_secret_env": "SECRET"}


def parse_store(table: dict[str, Any]) -> Any:
    return config.parse({"tenants": [TENANT], "store": table}, Path("/etc/agent/agent.toml")).store


async def test_local(tmp_path: Path) -> None:
    store = open_store(LocalStoreConfig(path=tmp_path))
    assert isinstance(store, LocalStore) and isinstance(store, Store)


async def test_s3_plain_and_spooled(tmp_path: Path) -> None:
    plain = open_store(S3StoreConfig(bucket="b", endpoint_url="http://127.0.0.1:9"))
    assert isinstance(plain, S3Store) and isinstance(plain, Store)
    spooled = open_store(S3StoreConfig(bucket="b", endpoint_url="http://127.0.0.1:9", spool_dir=tmp_path / "sp"))
    assert isinstance(spooled, SpoolingStore) and isinstance(spooled, Store)
    assert isinstance(spooled.inner, S3Store)
    await plain.aclose()
    await spooled.aclose()


def test_s3_table_parses_every_key() -> None:
    cfg = parse_store({"type": "s3", "bucket": "archive", "prefix": "/audit/", "region": "eu-west-1",
                       "endpoint_url": "http://127.0.0.1:8333", "addressing_style": "path", "sse": "aws:kms",
                       "kms_key_id": "alias/audit", "object_lock_mode": "COMPLIANCE", "object_lock_days": 400,
                       "spool_dir": "spool", "spool_max_bytes": 1 << 28, "multipart_threshold": 16 << 20,
                       "connect_timeout": "3s", "read_timeout": "2m", "max_attempts": 5})
    assert cfg.prefix == "audit" and cfg.spool_dir == Path("/etc/agent/spool")
    assert (cfg.connect_timeout, cfg.read_timeout, cfg.max_attempts) == (timedelta(seconds=3),
                                                                         timedelta(minutes=2), 5)


@pytest.mark.parametrize(("table", "message"), [
    ({"bucket": "b", "bogus": 1}, "bogus"),
    ({"bucket": "b", "kms_key_id": "k"}, "kms_key_id is only used with"),
    ({"bucket": "b", "object_lock_mode": "COMPLIANCE"}, "object_lock_days"),
    ({"bucket": "b", "max_attempts": 0}, "max_attempts"),
])
def test_s3_table_errors_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_store({"type": "s3", **table})
