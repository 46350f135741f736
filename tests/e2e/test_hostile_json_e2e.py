"""Valid but hostile JSON, end to end: records that orjson refuses or reshapes (a lone surrogate
escape, integers past 64 bits, 1e400, nesting deeper than 1024, an integer of 5000 digits) and a
record with .NET's default time (0001-01-01) are served by the emulator byte for byte, collected
in one pass with no gap and no retry loop, exported parsed-equal to what was served (compared with
the stdlib parser, not the agent's), and seen by `verify`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from tests.e2e.helpers import edit_config, run_agent
from tests.e2e.test_graph_e2e import start_args
from tests.emulator_fixture import running_emulator

STREAM = "graph.directory_audits"


def _record(n: int, when: str, extra: str) -> bytes:
    return (f'{{"id":"hostile-{n}","category":"UserManagement","activityDisplayName":"Update user",'
            f'"activityDateTime":"{when}","loggedByService":"Core Directory","result":"success",'
            f'{extra}}}').encode()


def hostile_corpus(now: datetime) -> list[bytes]:
    recent = [(now - timedelta(minutes=30 + i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for i in range(9)]
    deep = "[" * 3000 + "1" + "]" * 3000
    mid = '{"a":' * 300 + "null" + "}" * 300  # orjson reads 300 levels but writes only 254
    return [
        _record(0, recent[0], '"note":"plain"'),
        _record(1, recent[1], '"displayName":"lone \\ud800 surrogate","other":"\\udfff"'),
        _record(2, recent[2], '"big":123456789012345678901234567890,"neg":-9223372036854775809'),
        _record(3, recent[3], '"huge":1e400,"tiny":-1E+400,"fine":1.5'),
        _record(4, recent[4], f'"deep":{deep}'),
        _record(5, recent[5], f'"mid":{mid}'),
        _record(6, recent[6], '"digits":' + "7" * 5000),
        _record(7, "0001-01-01T00:00:00Z", '"note":".NET default time"'),
        _record(8, recent[8], '"mixed":[18446744073709551616,"\\ud83d",1e999,{"k":[[[]]]}]'),
    ]


@contextmanager
def deep_recursion() -> Iterator[None]:
    """The stdlib reference parser recurses once per level; 3000 levels need a higher limit."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def reference(line: bytes) -> Any:
    """What a record means, read by the stdlib (exact decimals, so 1e400 and 1E+400 compare equal)."""
    return json.loads(line, parse_float=Decimal, parse_int=Decimal)


def test_hostile_but_valid_json_is_collected_exported_equal_and_verified(tmp_path: Path) -> None:
    corpus = tmp_path / "hostile.ndjson"
    lines = hostile_corpus(datetime.now(UTC))
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    scenario = (f'seed = 71\nstart = "-2h"\nend = "-10m"\n[tenant]\n[streams."{STREAM}"]\ncorpus = "{corpus}"\n'
                'corpus_times = "keep"\n[quota]\ngraph_requests_per_10s = 0\n')
    cfg = tmp_path / "agent.toml"
    with running_emulator(scenario, tmp_path, extra_args=start_args(tmp_path)):
        edit_config(cfg, "collection", window="36500d")  # the longest window allowed: back to year 1 in 21
        proc = run_agent(["collect", "--once", "--since", "0001-01-01T00:00:00Z", "--stream", STREAM,
                          "--config", str(cfg)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        again = run_agent(["collect", "--once", "--config", str(cfg)])  # nothing left to retry
        assert again.returncode == 0, again.stderr[-3000:]
        exported = run_agent(["export", "--config", str(cfg)])
        assert exported.returncode == 0, exported.stderr[-2000:]
        verified = run_agent(["verify", "--config", str(cfg)])
        assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr
        since = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:00:00Z")
        reconciled = run_agent(["reconcile", "--since", since, "--format", "json", "--config", str(cfg)])
        assert reconciled.returncode == 0, reconciled.stdout[-2000:] + reconciled.stderr[-2000:]
        status = run_agent(["status", "--json", "--config", str(cfg)])
        assert status.returncode == 0, status.stdout
        [row] = [r for r in orjson.loads(status.stdout) if r["stream"] == STREAM]
        assert row["gaps"] == [] and row["last_error"] is None
    got = [line for line in exported.stdout.encode("utf-8", "surrogatepass").splitlines() if line.strip()]
    with deep_recursion():
        want = {reference(line)["id"]: reference(line) for line in lines}
        have = {reference(line)["id"]: reference(line) for line in got}
        assert sorted(have) == sorted(want)
        for rid, record in want.items():
            assert have[rid] == record, rid
    assert any(b'"activityDateTime":"0001-01-01T00:00:00Z"' in line for line in got)
