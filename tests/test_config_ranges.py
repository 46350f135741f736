"""Every numeric config key is range-checked: negative, NaN, infinite and absurdly large values are
config errors naming the key (exit 2), never a traceback or a silently wrong collector.

The key list is derived from the config dataclasses, so a numeric key added later without a range
check fails here.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import config
from agent.errors import ConfigError
from agent.siem import config as siem_config
from agent.siem.sentinel.config import SentinelConfig
from agent.siem.splunk.config import SplunkConfig

ROOT = Path(__file__).resolve().parents[1]
TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
BASE = f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
streams = ["graph.signins.interactive"]
"""
LOCAL = '[store]\ntype = "local"\npath = "archive"\n'
S3 = '[store]\ntype = "s3"\nbucket = "b"\n'
SIEM = {"elastic": '[siem]\ntype = "elastic"\nurl = "https://siem.example"\napi_key_env = "K"\n',
        "splunk": '[siem]\ntype = "splunk"\nurl = "https://siem.example"\ntoken_env = "K"\n',
        "sentinel": '[siem]\ntype = "sentinel"\nworkspace_id = "7c759f10-1111-4222-8333-944455566677"\n'}
NUMERIC = {"timedelta", "int", "float"}


@pytest.fixture(autouse=True)
def _siem_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K", "not-a-real-key")


def _keys(cls: type, table: str, prefix: str = "") -> list[tuple[str, str, str]]:
    """(table, key, python type) of each numeric field of a config dataclass (modes are strings)."""
    return [(table, prefix + f.name, str(f.type)) for f in dataclasses.fields(cls)
            if str(f.type) in NUMERIC and not f.name.endswith("_mode")]


_HEC = {k for _, k, _ in _keys(SplunkConfig, "siem")}  # splunk-only keys
_SENTINEL = {k for _, k, _ in _keys(SentinelConfig, "siem")}  # sentinel-only keys
KEYS = (_keys(config.CollectionConfig, "collection") + _keys(config.HttpConfig, "http")
        + _keys(config.ServiceConfig, "service") + _keys(config.AlertsConfig, "alerts")
        + _keys(config.S3StoreConfig, "store") + _keys(siem_config.SiemConfig, "siem")
        + _keys(SentinelConfig, "siem") + _keys(SplunkConfig, "siem")
        + _keys(siem_config.BackfillConfig, "siem", "backfill_"))
BAD = ("-7200", "nan", "inf", "-inf", "1e308", str(2**62), "-1")


def _load(tmp_path: Path, table: str, key: str, value: str) -> Any:
    (tmp_path / "secret").write_text("s")
    siem = SIEM["splunk" if key in _HEC else "sentinel" if key in _SENTINEL else "elastic"]
    if table == "siem":
        text = BASE + LOCAL + siem + f"{key} = {value}\n"
    elif table == "store":
        text = BASE + S3 + f"{key} = {value}\n"
    else:
        text = BASE + LOCAL + f"[{table}]\n{key} = {value}\n"
    path = tmp_path / "agent.toml"
    path.write_text(text)
    cfg = config.load(path)
    return cfg


def test_the_key_list_covers_every_table() -> None:
    tables = {t for t, _, _ in KEYS}
    assert tables == {"collection", "http", "service", "alerts", "store", "siem"}
    assert ("collection", "overlap", "timedelta") in KEYS and ("siem", "backfill_rate", "float") in KEYS
    assert ("siem", "hec_ack_timeout", "timedelta") in KEYS and len(KEYS) > 40


@pytest.mark.parametrize(("table", "key", "kind"), KEYS, ids=[f"{t}.{k}" for t, k, _ in KEYS])
def test_out_of_range_values_are_config_errors_naming_the_key(tmp_path: Path, table: str, key: str,
                                                              kind: str) -> None:
    for value in BAD:
        with pytest.raises(ConfigError, match=rf"{table}\.{key}\b"):
            _load(tmp_path, table, key, value)


@pytest.mark.parametrize("text", ['"-2h"', '"1e308s"', '"99999999999999999999d"', '"36501d"'])
def test_bad_duration_strings(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"collection\.overlap"):
        _load(tmp_path, "collection", "overlap", text)


def test_intervals_that_would_spin_must_be_positive(tmp_path: Path) -> None:
    for table, key in (("collection", "poll_interval"), ("service", "reconcile_interval"), ("http", "timeout")):
        with pytest.raises(ConfigError, match=rf"{table}\.{key}: must be more than 0"):
            _load(tmp_path, table, key, '"0s"')


def test_sane_values_still_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "collection", "overlap", '"90m"')
    assert cfg.collection.overlap.total_seconds() == 5400
    assert _load(tmp_path, "collection", "overlap", "0").collection.overlap.total_seconds() == 0
    assert _load(tmp_path, "collection", "initial_lookback", '"4000d"').collection.initial_lookback.days == 4000


@pytest.mark.parametrize(("snippet", "key"), [("[collection]\noverlap = -7200\n", "collection.overlap"),
                                              ("[collection]\noverlap = nan\n", "collection.overlap"),
                                              ("[service]\nreconcile_interval = inf\n", "service.reconcile_interval"),
                                              ('[siem]\ntype = "elastic"\nurl = "https://x"\napi_key_env = "K"\n'
                                               "bucket = 1e308\n", "siem.bucket")])
def test_agent_check_exits_2_naming_the_key(tmp_path: Path, snippet: str, key: str) -> None:
    (tmp_path / "secret").write_text("s")
    path = tmp_path / "agent.toml"
    path.write_text(BASE + LOCAL + snippet)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "K": "not-a-real-key"}
    proc = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(path)], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert key in proc.stderr and "Traceback" not in proc.stderr
