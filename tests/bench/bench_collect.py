"""P1: records/s of `agent collect` (Graph sign-ins over HTTPS, unthrottled emulator, no faults)
next to a raw baseline in the same run: aiohttp following @odata.nextLink, orjson parse, per-record
dumps, zstd level 3, one file written. Prints both and their ratio (target >= 0.8).

    PYTHONPATH=. python tests/bench/bench_collect.py [--records 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msal
import orjson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import Result, command
from tests.e2e.helpers import edit_config, run_agent
from tests.emulator_fixture import running_emulator

STREAM = "graph.signins.interactive"


def scenario(records: int) -> str:
    return f"""
seed = 5
start = "-20h"
end = "-10m"
[tenant]
[streams."{STREAM}"]
records = {records}
[quota]
graph_requests_per_10s = 0
"""


async def baseline(info: dict[str, str], session: object, out: Path) -> int:
    app = msal.ConfidentialClientApplication(info["client_id"], client_credential=info["client_secret"],
                                             authority=f"{info['login']}/{info['tenant_id']}",
                                             instance_discovery=False, http_client=session)
    token = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])["access_token"]
    ctx = ssl.create_default_context(cafile=info["ca_file"])
    url: str | None = f"{info['graph']}/beta/auditLogs/signIns"
    params: dict[str, str] | None = {
        "$filter": "signInEventTypes/any(t: t eq 'interactiveUser') and createdDateTime ge 2000-01-01T00:00:00Z",
        "$top": "1000"}
    n = 0
    raw = bytearray()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        while url:
            async with s.get(url, params=params, headers={"Authorization": f"Bearer {token}"}) as r:
                doc = orjson.loads(await r.read())
            for rec in doc["value"]:
                raw += orjson.dumps(rec) + b"\n"
                n += 1
            url, params = doc.get("@odata.nextLink"), None
    out.write_bytes(zstandard.ZstdCompressor(level=3).compress(bytes(raw)))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--result", help="write the summary JSON here (tests/bench/run.py)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        cfg = tmp_path / "agent.toml"
        with running_emulator(scenario(args.records), tmp_path / "emu", timeout=300,
                              extra_args=("--write-config", str(cfg), "--store-dir", str(tmp_path / "store"))) as emu:
            edit_config(cfg, "collection", window="30d", initial_lookback="2d", page_size=1000)
            edit_config(cfg, "log", format="json", level="WARNING")
            t0 = time.perf_counter()
            n_base = asyncio.run(baseline(emu.info, emu.session(), tmp_path / "baseline.ndjson.zst"))
            base_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            proc = run_agent(["collect", "--once", "--config", str(cfg)])
            agent_s = time.perf_counter() - t0
            assert proc.returncode == 0, proc.stderr[-2000:]
            stored = sum(orjson.loads(line)["stored"] for line in proc.stderr.splitlines()
                         if line.startswith('{"tenant"'))
    base_rate, agent_rate = n_base / base_s, stored / agent_s
    print(f"records: baseline {n_base}, agent stored {stored}")
    print(f"baseline: {base_s:.2f} s, {base_rate:,.0f} records/s")
    print(f"agent collect (subprocess, incl. start-up): {agent_s:.2f} s, {agent_rate:,.0f} records/s")
    print(f"ratio agent/baseline: {agent_rate / base_rate:.2f} (target >= 0.8)")
    ratio = agent_rate / base_rate
    details = "\n".join([
        "| run | records | seconds | records/s |", "|---|---:|---:|---:|",
        f"| baseline: aiohttp + orjson + zstd-3 into one file | {n_base:,} | {base_s:.2f} | {base_rate:,.0f} |",
        f"| `agent collect --once` (subprocess, start-up and token included) | {stored:,} | {agent_s:.2f} "
        f"| {agent_rate:,.0f} |"])
    Result(id="P1", title="Collect throughput (Graph sign-ins, HTTPS)", figure=f"{agent_rate:,.0f} records/s",
           baseline=f"raw fetch+parse+zstd+write: {base_rate:,.0f} records/s", ratio=round(ratio, 2),
           target=">= 0.8 of the baseline", met=ratio >= 0.8, details=details, command=command()).emit(args.result)


if __name__ == "__main__":
    main()
