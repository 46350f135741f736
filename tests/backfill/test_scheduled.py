"""`agent run` with `[service] backfill = "on"`: the scheduled reconcile's SIEM gaps are backfilled in
bounded runs until the emulated SIEM holds every lost record, each exactly once (its own account)."""

from __future__ import annotations

import math
import signal
import socket
import subprocess
import time
import urllib.request

from tests.backfill.helpers import agent_cmd, agent_env, backfill_env
from tests.emulator_fixture import REPO
from tests.service.harness import Metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_service_backfills_the_siem_gaps_in_bounded_runs(tmp_path):
    with backfill_env(tmp_path, "elastic") as env:
        lost = env.lost()
        assert len(lost) > 50
        bound, port = math.ceil(len(lost) / 2) + 1, _free_port()  # two scheduled runs close the gap
        text = env.config.read_text()
        env.config.write_text(text.replace("[siem]\n", f'[service]\nlisten = "127.0.0.1:{port}"\nnotices = false\n'
                                           f'reconcile_interval = "2s"\nbackfill = "on"\n'
                                           f"backfill_max_records = {bound}\n\n[siem]\n", 1))
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(agent_cmd("run", "--config", str(env.config)), env=agent_env(), cwd=REPO,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and set(env.ingested_counts()) != lost:
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(1)
            counts = env.ingested_counts()
            assert set(counts) == lost and set(counts.values()) == {1}, log.read_text()[-3000:]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                m = Metrics.parse(resp.read().decode())
            assert m.sum("agent_backfill_records_total") == len(lost)
        finally:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(30)
        assert rc == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert text.count("Scheduled backfill done.") >= 2, "bounded: more than one run"
        assert "backfill_sent" in text
