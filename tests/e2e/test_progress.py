"""Progress for long work on a terminal only: a first catch-up shows coverage, records, rate and
ETA on one rewritten line; piped output and logs never carry it."""

from __future__ import annotations

from pathlib import Path

from tests.backfill.helpers import scenario
from tests.emulator_fixture import running_emulator
from tests.terminal import on_tty, piped


def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    args = ("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"), "--siem", "sentinel")
    with running_emulator(scenario(), tmp_path / "emu", extra_args=args):
        text = cfg.read_text().replace("[collection]\n", '[collection]\ninitial_lookback = "40h"\nwindow = "2h"\n', 1)
        cfg.write_text(text)
        tty = on_tty(["collect", "--once", "--config", str(cfg)])
        assert tty.returncode == 0, tty.out[-3000:]
        progress = [ln for ln in tty.out.replace("\r", "\n").splitlines() if ln.startswith("collect ")]
        assert progress, tty.out[-3000:]
        last = progress[-1]
        assert "100%" in last and "windows" in last and "records" in last and "ETA" in last and "/3 streams" in last
        rec = on_tty(["reconcile", "--config", str(cfg), "--since", "32h", "--include-unsettled"])
        assert "reconcile 3/3 streams (100%)" in rec.out.replace("\r", "\n")
        # piped: no progress line, no carriage return, in either stream
        again = piped(["reconcile", "--config", str(cfg), "--since", "32h", "--include-unsettled"])
        assert "\r" not in again.err and "ETA" not in again.err and "ETA" not in again.out
    fresh = tmp_path / "fresh"
    args = ("--write-config", str(fresh / "agent.toml"), "--store-dir", str(fresh / "store"), "--siem", "sentinel")
    with running_emulator(scenario(), fresh / "emu", extra_args=args):
        p = piped(["collect", "--once", "--config", str(fresh / "agent.toml")])
        assert p.returncode == 0
        assert "\r" not in p.err and "ETA" not in p.err
