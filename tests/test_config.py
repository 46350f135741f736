from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent import config
from agent.errors import ConfigError

TENANT = "6f1c2a47-1c1e-4d0e-9a43-3c8f1f7d2b10"


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "secret").write_text("s3cr3t-value\n")
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return p


BASE = f"""
[[tenants]]
id = "{TENANT}"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "secret"
streams = ["graph.signins.interactive", "o365.exchange"]

[store]
type = "local"
path = "archive"
"""


def test_minimal_config_resolves_paths_and_defaults(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, BASE))
    t = cfg.tenants[0]
    assert t.id == TENANT and t.streams == ("graph.signins.interactive", "o365.exchange")
    assert t.endpoints.graph == "https://graph.microsoft.com"
    assert cfg.store.type == "local" and cfg.store.path == tmp_path / "archive"  # type: ignore[union-attr]
    assert t.credential.secret is not None and t.credential.secret.reveal() == "s3cr3t-value"
    assert cfg.collection.graph_requests_per_10s == 5


def test_secret_never_in_repr(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, BASE))
    assert "s3cr3t-value" not in repr(cfg)


@pytest.mark.parametrize(("snippet", "named"), [
    ("[collection]\nwindoww = '1h'\n", "windoww"),
    ("[collection]\nwindow = 'soon'\n", "collection.window"),
    ("[collection]\npage_size = 5000\n", "page_size"),
    ("[http]\nproxy = 'ftp://x'\n", "http.proxy"),
    ("[log]\nlevel = 'LOUD'\n", "log.level"),
    ("[bogus]\nx = 1\n", "bogus"),
])
def test_bad_values_name_the_key(tmp_path: Path, snippet: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config.load(_write(tmp_path, BASE + snippet))


def test_unknown_tenant_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key in \[tenants\[0\]\]: clientid"):
        config.load(_write(tmp_path, BASE.replace('client_id = "1', 'clientid = "x"\nclient_id = "1')))


def test_literal_secret_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('client_secret_file = "secret"', 'client_secret = "hunter2-hunter2"')
    with pytest.raises(ConfigError) as err:
        config.load(_write(tmp_path, text))
    assert "client_secret_file" in str(err.value) and "hunter2" not in str(err.value)


def test_bad_tenant_id_and_stream(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a tenant GUID"):
        config.load(_write(tmp_path, BASE.replace(TENANT, "contoso")))
    with pytest.raises(ConfigError, match=r"unknown stream 'graph\.signins'"):
        config.load(_write(tmp_path, BASE.replace('"o365.exchange"', '"graph.signins"')))


def test_national_cloud_endpoints(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, BASE.replace('client_secret_file', 'cloud = "gcc_high"\nclient_secret_file')))
    ep = cfg.tenants[0].endpoints
    assert (ep.login, ep.graph, ep.management) == (
        "https://login.microsoftonline.us", "https://graph.microsoft.us", "https://manage.office365.us")


def test_durations() -> None:
    assert config.parse_duration("90s") == timedelta(seconds=90)
    assert config.parse_duration("167h") == timedelta(hours=167)
    with pytest.raises(ConfigError):
        config.parse_duration("7 days")


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(_write(tmp_path, "[[tenants]\n"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        config.load(tmp_path / "missing.toml")


def test_anchors_parse_local_and_s3(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, BASE + """
[[anchors]]
type = "local"
path = "anchors"

[[anchors]]
type = "s3"
bucket = "heads"
prefix = "agent"
object_lock_mode = "COMPLIANCE"
object_lock_days = 30
"""))
    local, s3 = cfg.anchors
    assert local.type == "local" and local.store == config.LocalStoreConfig(tmp_path / "anchors")
    assert s3.type == "s3" and isinstance(s3.store, config.S3StoreConfig) and s3.store.bucket == "heads"
    assert config.load(_write(tmp_path, BASE)).anchors == ()


@pytest.mark.parametrize(("snippet", "named"), [
    ('type = "local"\npath = "archive/heads"', "inside the store"),
    ('type = "local"', r"anchors\[0\]\.path is required"),
    ('type = "s3"\nbucket = "b"', "COMPLIANCE"),
    ('type = "s3"\nbucket = "b"\nobject_lock_mode = "GOVERNANCE"\nobject_lock_days = 1', "COMPLIANCE"),
    ('type = "s3"\nbucket = "b"\nobject_lock_mode = "COMPLIANCE"\nobject_lock_days = 1\nspool_dir = "x"',
     "never spooled"),
    ('type = "siem"', "needs a .siem. table"),
    ('type = "ftp"', r"anchors\[0\]\.type"),
    ('type = "local"\npath = "a"\ncolour = "red"', "colour"),
])
def test_bad_anchor_is_refused_by_name(tmp_path: Path, snippet: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config.load(_write(tmp_path, BASE + "\n[[anchors]]\n" + snippet + "\n"))


def test_s3_anchor_may_not_share_the_store_prefix(tmp_path: Path) -> None:
    s3_store = BASE.replace('type = "local"\npath = "archive"', 'type = "s3"\nbucket = "b"\nprefix = "archive"')
    text = s3_store + ('\n[[anchors]]\ntype = "s3"\nbucket = "b"\nprefix = "archive/heads"\n'
                       'object_lock_mode = "COMPLIANCE"\nobject_lock_days = 1\n')
    with pytest.raises(ConfigError, match="overlaps the store"):
        config.load(_write(tmp_path, text))
    ok = text.replace('prefix = "archive/heads"', 'prefix = "heads"')
    assert config.load(_write(tmp_path, ok)).anchors[0].type == "s3"


def test_defender_streams_refused_in_the_china_cloud(tmp_path: Path) -> None:
    text = BASE.replace('streams = ["graph.signins.interactive", "o365.exchange"]',
                        'streams = ["graph.security_alerts"]\ncloud = "china"')
    with pytest.raises(ConfigError, match=r"graph\.security_alerts is not available in the China cloud"):
        config.load(_write(tmp_path, text))
    ok = BASE.replace('streams = ["graph.signins.interactive", "o365.exchange"]',
                      'streams = ["graph.security_alerts"]\ncloud = "gcc_high"')
    assert config.load(_write(tmp_path, ok)).tenants[0].streams == ("graph.security_alerts",)
