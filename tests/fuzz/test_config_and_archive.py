"""Fuzz `agent.config.parse` (and the `[siem]` table) with arbitrary TOML-like documents, and
`Archive.write` with hostile records: only ConfigError (config) or a quarantine (archive) may result."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent import config
from agent.archive.archive import Archive
from agent.errors import ConfigError
from agent.logs import register_secret
from agent.siem import config as siem_config
from agent.store.local import LocalStore
from tests.fuzz.strategies import SECRET

register_secret(SECRET)
FUZZ = settings(max_examples=200, deadline=None)
TENANT = "6f1c8a2e-1111-4222-8333-944455556666"

toml_scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                         st.floats(allow_nan=False), st.text(max_size=20), st.just(SECRET),
                         st.sampled_from(["6h", "0s", "-5m", "1e9d", "99999999999d", "global", "china", "local",
                                          "s3", "sentinel", "splunk", "elastic", TENANT, "o365.exchange",
                                          "graph.signins.interactive", "https://x.test", "/nonexistent/file"]))
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
KEYS = {
    "tenants": ["id", "client_id", "client_secret_env", "client_secret_file", "streams", "cloud", "name",
                "publisher_id", "endpoints", "certificate_file", "private_key_file", "pfx_file"],
    "store": ["type", "path", "bucket", "prefix", "region", "endpoint_url", "object_lock_days", "spool_max_bytes"],
    "collection": ["window", "overlap", "initial_lookback", "page_size", "max_attempts", "management_window",
                   "management_concurrency", "graph_requests_per_10s", "poll_interval"],
    "http": ["ca_file", "proxy", "timeout"], "log": ["level", "format"],
    "service": ["listen", "stall_threshold", "reconcile_interval", "silence_ratio"],
    "alerts": ["webhooks", "min_interval"],
    "siem": ["type", "workspace_id", "endpoint", "url", "token_env", "api_key_env", "index", "bucket", "settle",
             "max_rows", "max_attempts", "targets", "tenant", "page_size"],
}


def table(name: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(KEYS[name] + ["unknown_key"]), toml_values, max_size=5)


documents = st.fixed_dictionaries({}, optional={
    "tenants": st.one_of(toml_values, st.lists(table("tenants"), max_size=2),
                         st.just([{"id": TENANT, "client_id": TENANT, "client_secret_env": "X"}])),
    **{name: st.one_of(table(name), toml_values) for name in KEYS if name != "tenants"},
    "extra": toml_values})


@FUZZ
@example({"tenants": [{"id": TENANT, "client_id": TENANT, "client_secret_env": "X"}], "store": {"type": "local",
          "path": "/tmp/x"}, "collection": {"window": "99999999999d"}})
@given(doc=documents)
def test_config_parse_raises_only_config_error(doc: dict[str, Any]) -> None:
    try:
        cfg = config.parse(doc)
    except ConfigError as exc:
        assert SECRET not in str(exc) or SECRET in repr(doc)  # only what the operator wrote may be quoted
        return
    assert cfg.siem is None or isinstance(cfg.siem, siem_config.SiemConfig)  # [siem] is parsed at load


@FUZZ
@given(raw=st.one_of(st.none(), table("siem"), st.dictionaries(st.text(max_size=8), toml_values, max_size=4)))
def test_siem_table_raises_only_config_error(raw: dict[str, Any] | None) -> None:
    with contextlib.suppress(ConfigError):
        siem_config.parse(raw, tenants=(TENANT,))


HUGE = "x" * 1_000_000
ids = st.one_of(st.text(max_size=30), st.sampled_from(["../../etc/passwd", "a/b\\c", "..", "/", "\x00", "tenant=x/",
                                                     HUGE, ""]),
                st.integers(min_value=-(2**63), max_value=2**64 - 1), st.none(),
                st.lists(st.text(max_size=3), max_size=2),
                st.floats(allow_nan=False, allow_infinity=False))
times = st.one_of(st.sampled_from(["2026-03-10T10:00:00", "2026-03-10T10:00:00.1234567Z", "9999-12-31T23:59:59Z",
                                   "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00", "not a time", ""]),
                  st.text(max_size=20), st.integers(min_value=0, max_value=2**63), st.none())
# Records reach the archive only through orjson.loads, which never yields lone surrogates, ints
# beyond 64 bits or non-finite floats; within that, anything goes.
records = st.lists(st.fixed_dictionaries({}, optional={"Id": ids, "CreationTime": times, "Blob": st.sampled_from(
    [HUGE, "\x00", SECRET, "\u2028"])}), max_size=6)


@FUZZ
@example([{"Id": "a/../../b", "CreationTime": "2026-03-10T10:00:00"}, {"Id": 5, "CreationTime": "x"}])
@example([{"Id": "a", "CreationTime": "9999-12-31T23:59:59Z"}])
@given(batch=records)
def test_archive_write_keeps_or_quarantines_hostile_records(batch: list[dict[str, Any]]) -> None:
    async def go() -> None:
        with tempfile.TemporaryDirectory() as root:
            archive = Archive(LocalStore(Path(root)))
            result = await archive.write(TENANT, "o365.exchange", batch)
            assert result.stored + result.duplicates + result.quarantined == len(batch)
            written = {str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file()}
            assert all(not w.startswith("..") and "etc/passwd" not in w for w in written)

    asyncio.run(go())
