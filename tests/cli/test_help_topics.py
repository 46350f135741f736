"""`agent help [TOPIC]`: every topic prints its text; no topic lists them; an unknown one is exit 2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main as cli
from agent.cli.help_topics import TOPICS
from agent.service.alerts import KINDS
from agent.streams import STREAMS
from tests.cli.test_completion import _complete, path_with_agent  # noqa: F401 - a fixture

REPO = Path(__file__).resolve().parents[2]

KEY_TERMS = {
    "config": ("_file", "_env", "[[tenants]]", "agent check", "exit 2"),
    "streams": tuple(STREAMS),
    "exit-codes": ("0", "1", "2", "3", "gaps", "config error"),
    "alerts": ("webhook", "pagerduty", "max_per_hour"),
    "metrics": ("/metrics", "/readyz", "agent_tenant_info", "9464"),
    "backfill": ("--backfill", "--dry-run", "ledger", "[service] backfill"),
    "anchors": ("[[anchors]]", "agent verify", "COMPLIANCE", "local", "s3", "siem"),
    "deep-history": ("7 days", "auditLog/queries", "AuditLogsQuery.Read.All", "--since"),
}


def test_every_topic_has_key_terms() -> None:
    assert set(KEY_TERMS) == set(TOPICS)


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_topic_prints_text_with_its_key_terms(topic: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["help", topic]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    for term in KEY_TERMS[topic]:
        assert term in out, f"{topic}: {term!r} missing"


def test_alerts_topic_names_every_alert_kind(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["help", "alerts"])
    out = capsys.readouterr().out
    missing = [k for k in KINDS if k not in out]
    assert not missing


def test_no_topic_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["help"]) == 0
    out = capsys.readouterr().out
    for topic in TOPICS:
        assert f"  {topic} " in out


def test_unknown_topic_is_exit_2_naming_the_valid_ones() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent", "help", "nope"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert all(topic in proc.stderr for topic in TOPICS)


def test_bash_completes_help_topics(path_with_agent: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    assert set(_complete(path_with_agent, "agent help ", tmp_path)) == set(TOPICS)
    assert _complete(path_with_agent, "agent help deep", tmp_path) == ["deep-history"]
    assert "help" in _complete(path_with_agent, "agent he", tmp_path)


def test_names_in_the_topics_exist(capsys: pytest.CaptureFixture[str]) -> None:
    """What the short texts name is real: metrics in the metrics reference (itself checked against the
    service), config tables and keys in the documented example config."""
    cli.main(["help", "metrics"])
    metrics_doc = (REPO / "docs" / "metrics.md").read_text()
    for metric in set(re.findall(r"\bagent_[a-z_]+", capsys.readouterr().out)):
        assert f"`{metric}`" in metrics_doc, metric
    example = (REPO / "packaging" / "agent.example.toml").read_text()
    for topic in ("config", "backfill", "deep-history", "alerts"):
        cli.main(["help", topic])
        out = capsys.readouterr().out
        for table in re.findall(r"\[\[?[a-z.]+\]\]?", out):
            assert table in example, f"{topic}: {table}"
        for table, key in re.findall(r"\[([a-z]+)\] ([a-z]+_[a-z_]+|[a-z]+(?= =))", out):
            assert re.search(rf"^#?{key} = ", example.split(f"[{table}]", 1)[1], re.M), f"{topic}: [{table}] {key}"
