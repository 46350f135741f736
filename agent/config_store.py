"""The `[store]` table and the `[[anchors]]` tables: where the archive lives and where its chain
heads are published, each checked so that an anchor is never something the store's writer can rewrite."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent.config_table import Table
from agent.errors import ConfigError
from agent.siem.config import SiemConfig

_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class LocalStoreConfig:
    path: Path
    file_mode: int = 0o600  # records hold personal data: owner-only whatever the umask
    dir_mode: int = 0o700
    type: str = "local"


@dataclass(frozen=True)
class S3StoreConfig:
    bucket: str
    prefix: str = ""
    region: str = "us-east-1"
    endpoint_url: str | None = None
    addressing_style: str = "auto"  # "path" for most S3-compatible servers
    sse: str | None = None  # "AES256" or "aws:kms"
    kms_key_id: str | None = None
    object_lock_mode: str | None = None  # "COMPLIANCE" or "GOVERNANCE"
    object_lock_days: int = 0
    spool_dir: Path | None = None
    spool_max_bytes: int = 1 << 30
    multipart_threshold: int = 64 << 20
    # Fail fast when S3 is unreachable so the outage spool takes over instead of stalling collection.
    connect_timeout: timedelta = timedelta(seconds=10)
    read_timeout: timedelta = timedelta(seconds=60)
    max_attempts: int = 3  # botocore "standard" retries per call, before a put is spooled
    file_mode: int = 0o600  # of the outage spool's files and directories (they hold records)
    dir_mode: int = 0o700
    type: str = "s3"


StoreConfig = LocalStoreConfig | S3StoreConfig


@dataclass(frozen=True)
class AnchorConfig:
    """One `[[anchors]]` table: where chain heads are published (`agent.archive.anchors`). `store` is the
    create-only place they go: a directory (`local`) or an Object Lock bucket/prefix (`s3`)."""

    type: str
    label: str
    store: StoreConfig | None = None
    index: str = ""  # type = "siem": the index heads go to ("" = ms-log-agent-chain-heads / Splunk main)


def _mode(t: Table, key: str, default: int, allowed: int) -> int:
    """A permission mode written as an octal string ("0640"): a TOML integer would be read in
    decimal by anyone who forgets the 0o prefix. The owner keeps read and write (and, for
    directories, search): the agent itself must be able to use what it creates."""
    text = t.string(key)
    if text is None:
        return default
    owner = 0o700 if allowed == 0o777 else 0o600
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if mode < 0 or mode & ~allowed or mode & owner != owner:
        raise ConfigError(f"{t.where}.{key}: {text!r} is not a mode between {owner:04o} and {allowed:04o} "
                          "written in octal (e.g. \"0640\")")
    return mode


def parse_store(t: Table, base: Path | None) -> StoreConfig:
    kind = t.string("type", "local", ("local", "s3"))
    file_mode, dir_mode = _mode(t, "file_mode", 0o600, 0o666), _mode(t, "dir_mode", 0o700, 0o777)
    if kind == "local":
        path = t.path("path", base)
        if path is None:
            raise ConfigError("store.path is required for type = \"local\"")
        return LocalStoreConfig(path=path, file_mode=file_mode, dir_mode=dir_mode)
    bucket = t.required("bucket")
    cfg = S3StoreConfig(
        bucket=bucket,
        prefix=t.string("prefix", "").strip("/"),
        region=t.string("region", "us-east-1"),
        endpoint_url=t.string("endpoint_url"),
        addressing_style=t.string("addressing_style", "auto", ("auto", "path", "virtual")),
        sse=t.string("sse", None, ("AES256", "aws:kms")),
        kms_key_id=t.string("kms_key_id"),
        object_lock_mode=t.string("object_lock_mode", None, ("COMPLIANCE", "GOVERNANCE")),
        object_lock_days=t.integer("object_lock_days", 0, maximum=36500),
        spool_dir=t.path("spool_dir", base),
        spool_max_bytes=t.integer("spool_max_bytes", 1 << 30, minimum=1 << 20, maximum=1 << 50),
        multipart_threshold=t.integer("multipart_threshold", 64 << 20, minimum=5 << 20,
                                      maximum=5 << 30),  # S3 takes at most 5 GiB in one PUT
        connect_timeout=t.duration("connect_timeout", timedelta(seconds=10), positive=True, maximum=_HOUR),
        read_timeout=t.duration("read_timeout", timedelta(seconds=60), positive=True, maximum=_HOUR),
        max_attempts=t.integer("max_attempts", 3, minimum=1, maximum=20),
        file_mode=file_mode,
        dir_mode=dir_mode,
    )
    if cfg.kms_key_id and cfg.sse != "aws:kms":
        raise ConfigError("store.kms_key_id is only used with sse = \"aws:kms\"")
    if cfg.object_lock_mode and cfg.object_lock_days < 1:
        raise ConfigError("store.object_lock_days must be at least 1 when object_lock_mode is set")
    return cfg


def parse_anchor(data: Any, index: int, base: Path | None, store: StoreConfig,
                 siem: SiemConfig[Any] | None) -> AnchorConfig:
    """An anchor the store's writer cannot rewrite: never the store itself, and on S3 only with
    Object Lock in COMPLIANCE mode (GOVERNANCE can be bypassed by a permission, and a plain bucket
    by anyone holding its key). A `siem` anchor's index is named and checked by the SIEM's vendor."""
    t = Table(data, f"anchors[{index}]")
    kind = t.string("type", None, ("local", "s3", "siem"))
    if kind is None:
        raise ConfigError(f"{t.where}.type is required (\"local\" or \"s3\")")
    if kind == "siem":
        if siem is None:
            raise ConfigError(f"{t.where}: type = \"siem\" needs a [siem] table (configured: none); or use a "
                              "\"local\" (WORM or append-only directory) or \"s3\" (Object Lock) anchor")
        name = siem.vendor.anchor_index(t.string("index", siem.vendor.anchor_default), f"{t.where}.index")
        t.finish()
        return AnchorConfig("siem", f"siem:{siem.type}:{name}", None, name)
    if kind == "local":
        path = t.path("path", base)
        if path is None:
            raise ConfigError(f"{t.where}.path is required for type = \"local\"")
        if isinstance(store, LocalStoreConfig) and _overlaps(Path(path), Path(store.path)):
            raise ConfigError(f"{t.where}.path: {path} is inside the store (or holds it); the store's writer "
                              "could rewrite it. Use another disk or a WORM mount")
        t.finish()
        return AnchorConfig("local", f"local:{path}", LocalStoreConfig(path=path))
    s3 = parse_store(t, base)
    t.finish()
    assert isinstance(s3, S3StoreConfig)
    if s3.object_lock_mode != "COMPLIANCE":
        raise ConfigError(f"{t.where}: an S3 anchor needs object_lock_mode = \"COMPLIANCE\" (and "
                          "object_lock_days) on a bucket with Object Lock; otherwise the key that writes it "
                          "can rewrite it")
    if s3.spool_dir is not None:
        raise ConfigError(f"{t.where}.spool_dir: an anchor is published directly or retried next pass, "
                          "never spooled")
    if isinstance(store, S3StoreConfig) and store.bucket == s3.bucket and (
            _prefix_overlaps(store.prefix, s3.prefix)):
        raise ConfigError(f"{t.where}: prefix {s3.prefix!r} overlaps the store's prefix in bucket {s3.bucket!r}")
    return AnchorConfig("s3", f"s3://{s3.bucket}/{s3.prefix}", s3)


def _overlaps(a: Path, b: Path) -> bool:
    try:
        a, b = a.resolve(), b.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise ConfigError(f"anchors: path {a} cannot be resolved ({exc})") from None
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _prefix_overlaps(a: str, b: str) -> bool:
    a, b = a.strip("/") + "/", b.strip("/") + "/"
    return a == "/" or b == "/" or a.startswith(b) or b.startswith(a)
