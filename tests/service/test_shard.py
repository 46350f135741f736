"""`agent run --shard i/n`: two agents, one bucket, disjoint tenants, together the whole truth."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.emulator_fixture import running_emulator
from tests.service.harness import Agent, archive_ids, archive_records, service_config, truth_ids
from tests.service.test_run import entra, wait_for

TENANTS = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
           "33333333-3333-4333-8333-333333333333")
STREAMS = ("graph.signins.interactive", "o365.exchange")
SCENARIO = f"""
seed = 3
start = "-3h"
end = "-10m"
{"".join(f'''
[[tenants]]
id = "{t}"
license = "p2"
''' for t in TENANTS)}
[streams."graph.signins.interactive"]
records = 150
[streams."o365.exchange"]
records = 100

[quota]
graph_requests_per_10s = 100
management_requests_per_minute = 20000

[management]
content_delay = ["1s", "10s"]
straggler_fraction = 0.0

[graph]
issues = 4
messages = 4
"""


@pytest.mark.slow
async def test_two_shards_share_one_store(tmp_path: Path) -> None:
    cfg_path, store = tmp_path / "run" / "agent.toml", tmp_path / "run" / "store"
    args = ("--write-config", str(cfg_path), "--store-dir", str(store))
    with running_emulator(SCENARIO, tmp_path / "emu", extra_args=args) as emu:
        truth = emu.truth()
        service_config(cfg_path, None, service={"listen": "127.0.0.1:0", "notices_interval": "5s"},
                       collection={"poll_interval": "5s", "initial_lookback": "4h", "management_rescan": "0s"})
        agents = [Agent(cfg_path, tmp_path / f"shard{i}.log", args=("--shard", f"{i}/2")) for i in range(2)]
        for a in agents:
            await a.start()
        try:
            async def complete() -> bool:
                for a in agents:
                    m = await a.metrics()
                    mine = {dict(ls)["tenant"] for (n, ls) in m.samples if n == "agent_records_stored_total"}
                    for t in mine:
                        if any(m.get("agent_records_stored_total", tenant=t, stream=s) != len(truth_ids(truth, t, s))
                               for s in STREAMS):
                            return False
                return True

            await wait_for("both shards to collect their tenants", complete, timeout=90, every=2)
            metrics = [await a.metrics() for a in agents]
        finally:
            for a in agents:
                await a.terminate()
    owned = [{dict(ls)["tenant"] for (n, ls) in m.samples if n == "agent_records_stored_total"} for m in metrics]
    assert owned == [{TENANTS[0], TENANTS[2]}, {TENANTS[1]}]  # tenant i -> agent i mod 2, config order
    for t in TENANTS:
        for s in STREAMS:
            ids = await archive_ids(store, t, s)
            assert set(ids) == truth_ids(truth, t, s) and max(ids.values()) == 1, (t, s)
    # each agent remembers its own alerts (notices here) in its own object: no lost updates
    files = {p.name: orjson.loads(p.read_bytes()) for p in (store / "_meta" / "alerts").iterdir()}
    assert set(files) <= {"sent-shard0of2.json", "sent-shard1of2.json"}, files
    remembered = {k for doc in files.values() for k in doc}
    expected = set()
    for t in TENANTS:
        for n in await archive_records(store, t, "graph.service_announcements"):
            if entra(n):
                expected.add(f"service_notice:{t}:{n['id']}")
    assert expected and remembered == expected
