"""Stores: where the archive lives. `open_store` maps the config's `type` to an implementation."""

from __future__ import annotations

from agent.config import StoreConfig
from agent.store.base import Store


def open_store(cfg: StoreConfig) -> Store:
    """Build the configured store; S3 support is imported only when used."""
    if cfg.type == "local":
        from agent.store.local import LocalStore

        return LocalStore(cfg.path)  # type: ignore[union-attr]
    raise NotImplementedError(f"store type {cfg.type!r} is not available in this build")
