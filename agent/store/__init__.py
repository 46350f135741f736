"""Store registry: the config's `store.type` names a factory; `open_store` builds the Store.

Implementations are imported lazily so a local-only install never loads boto3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import LocalStoreConfig, S3StoreConfig, StoreConfig
from agent.errors import ConfigError
from agent.store.base import Store

__all__ = ["FACTORIES", "Store", "open_store"]


def _local(cfg: LocalStoreConfig) -> Store:
    from agent.store.local import LocalStore

    return LocalStore(cfg.path, file_mode=cfg.file_mode, dir_mode=cfg.dir_mode)


def _s3(cfg: S3StoreConfig) -> Store:
    """S3, behind the outage spool when `spool_dir` is set (recommended for services)."""
    from agent.store.s3 import S3Store

    s3 = S3Store(cfg)
    if cfg.spool_dir is None:
        return s3
    from agent.store.spool import SpoolingStore

    return SpoolingStore(s3, cfg.spool_dir, cfg.spool_max_bytes, file_mode=cfg.file_mode, dir_mode=cfg.dir_mode)


FACTORIES: dict[str, Callable[[Any], Store]] = {"local": _local, "s3": _s3}


def open_store(cfg: StoreConfig) -> Store:
    """Build the configured Store; the caller owns it and must `await store.aclose()`."""
    try:
        factory = FACTORIES[cfg.type]
    except KeyError:
        raise ConfigError(f"store.type: unknown store {cfg.type!r}; valid: {', '.join(FACTORIES)}") from None
    return factory(cfg)
