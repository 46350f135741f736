"""`[siem]` is parsed at `config.load` by the vendor its `type` names: a bad key is a config error
naming the key before anything runs, never a scheduled reconcile failing hours into `agent run`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent import config
from agent.cli.main import main
from agent.errors import ConfigError
from agent.siem.config import SiemConfig
from agent.siem.elastic.config import ElasticConfig
from agent.siem.sentinel.config import SentinelConfig
from agent.siem.splunk.config import SplunkConfig

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"
WORKSPACE = "7c759f10-1111-4222-8333-944455566677"
SENTINEL = f'[siem]\ntype = "sentinel"\nworkspace_id = "{WORKSPACE}"\n'
SPLUNK = '[siem]\ntype = "splunk"\nurl = "https://splunk.example:8089"\ntoken_env = "SIEM_TOKEN"\n'
ELASTIC = '[siem]\ntype = "elastic"\nurl = "https://es.example:9200"\napi_key_env = "SIEM_TOKEN"\n'


def _file(tmp_path: Path, siem: str) -> Path:
    (tmp_path / "secret").write_text("not-a-real-secret")
    path = tmp_path / "agent.toml"
    path.write_text(f'[[tenants]]\nid = "{TENANT}"\nclient_id = "11111111-2222-3333-4444-555555555555"\n'
                    f'client_secret_file = "secret"\n[store]\ntype = "local"\npath = "archive"\n{siem}')
    return path


@pytest.mark.parametrize("siem", [SENTINEL, SPLUNK, ELASTIC], ids=["sentinel", "splunk", "elastic"])
def test_load_rejects_an_unknown_siem_key_naming_it(tmp_path: Path, siem: str) -> None:
    with pytest.raises(ConfigError, match=r"unknown key in \[siem\]: bogus_key"):
        config.load(_file(tmp_path, siem + "bogus_key = 1\n"))


@pytest.mark.parametrize(("siem", "line", "named"), [
    (SENTINEL, 'max_attempts = "six"', r"siem\.max_attempts: expected int, got str"),
    (SENTINEL, "max_attempts = 0", r"siem\.max_attempts: 0 is below the minimum 1"),
    (SENTINEL, 'ingestion_lag = "8d"', r"siem\.ingestion_lag must be between 0s and 7d"),
    (SPLUNK, "hec_ack = 1", r"siem\.hec_ack: expected bool, got int"),
    (ELASTIC, 'bucket = "7m"', r"siem\.bucket must be whole seconds"),
    (ELASTIC, '[siem.streams."o365.exchange"]\ntabel = "x"', r"unknown key in \[siem\.streams\.o365\.exchange\]"),
])
def test_load_rejects_a_wrong_type_or_range_naming_the_key(tmp_path: Path, siem: str, line: str,
                                                           named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config.load(_file(tmp_path, f"{siem}{line}\n"))


@pytest.mark.parametrize(("siem", "key"), [(ELASTIC, 'hec_url = "https://x"'), (SPLUNK, "ingestion_lag = \"1h\""),
                                           (SENTINEL, 'api_key_env = "K"'), (ELASTIC, 'index = "main"')])
def test_one_vendors_key_is_unknown_to_another(tmp_path: Path, siem: str, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"unknown key in \[siem\]: {key.split()[0]}"):
        config.load(_file(tmp_path, f"{siem}{key}\n"))


def test_config_siem_is_the_typed_vendor_config(tmp_path: Path) -> None:
    cfg = config.load(_file(tmp_path, SENTINEL + 'ingestion_lag = "2h"\n'))
    assert isinstance(cfg.siem, SiemConfig) and isinstance(cfg.siem.vendor, SentinelConfig)
    assert cfg.siem.vendor.workspace_id == WORKSPACE and cfg.siem.vendor.tenant == TENANT
    assert cfg.siem.vendor.ingestion_lag == timedelta(hours=2)
    assert isinstance(config.load(_file(tmp_path, SPLUNK)).siem.vendor, SplunkConfig)  # type: ignore[union-attr]
    elastic = config.load(_file(tmp_path, ELASTIC)).siem
    assert elastic is not None and isinstance(elastic.vendor, ElasticConfig)
    assert elastic.vendor.api_key.source == "env:SIEM_TOKEN"  # a reference; nothing read at load
    assert config.load(_file(tmp_path, "")).siem is None


@pytest.mark.parametrize(("siem", "label"), [(SENTINEL, "siem:sentinel:MsLogAgentChainHeads_CL"),
                                             (SPLUNK, "siem:splunk:main"),
                                             (ELASTIC, "siem:elastic:ms-log-agent-chain-heads")])
def test_a_siem_anchor_takes_its_default_index_from_the_vendor(tmp_path: Path, siem: str, label: str) -> None:
    cfg = config.load(_file(tmp_path, f'[[anchors]]\ntype = "siem"\n{siem}'))
    assert cfg.anchors[0].label == label


@pytest.mark.parametrize("command", [["check"], ["status"], ["verify"]])
def test_commands_exit_2_naming_the_bad_siem_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 command: list[str]) -> None:
    """`status` and `verify` never touch the SIEM: before, they ran with a [siem] table `agent run`
    would fail on; now every command refuses the file at load."""
    path = _file(tmp_path, SENTINEL + "bogus_key = 1\n")
    assert main([*command, "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key in [siem]: bogus_key" in err and len(err.strip().splitlines()) == 1
