"""Collection leases (agent/archive/lease.py) on real stores: local disk and SeaweedFS.

What must hold: one holder per tenant at a time, the second told who it is; a holder that died on
this host (SIGKILL, pid reused) frees the lease at once; one on another host only at its expiry;
a paused holder that was taken over notices before it moves a cursor.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agent.archive.codec import format_time
from agent.archive.layout import lease_prefix
from agent.archive.lease import LeaseLost, StoreLocked, TenantLeases, this_holder, try_acquire
from agent.store.base import Store
from agent.store.local import LocalStore
from agent.store.s3 import S3Store
from tests.store.servers import new_bucket, store_config

TENANT = "6f1c0000-0000-4000-8000-000000000001"


@pytest.fixture(params=["local", pytest.param("s3-seaweedfs", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "local":
        s: Store = LocalStore(tmp_path / "archive")
    else:
        weed = request.getfixturevalue("seaweed")
        s = S3Store(store_config(weed.endpoint, new_bucket(weed.client), prefix="archive"))
    yield s
    await s.aclose()


async def _plant(store: Store, gen: int, **holder: Any) -> None:
    """A lease document as another process would have written it."""
    now = datetime.now(UTC)
    doc = {**this_holder(), "acquired": format_time(now), "expires": format_time(now + timedelta(minutes=2)),
           **holder}
    await store.put(f"{lease_prefix(TENANT)}{gen:012d}.json", orjson.dumps(doc))


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


async def test_second_holder_is_refused_and_told_who_holds(store: Store) -> None:
    first = await try_acquire(store, TENANT)
    with pytest.raises(StoreLocked) as err:
        await try_acquire(store, TENANT)
    assert f"pid {os.getpid()}" in str(err.value)
    await first.release()
    second = await try_acquire(store, TENANT)
    assert second.gen == first.gen + 1
    left = [k async for k in store.list(lease_prefix(TENANT))]
    assert left == [f"{lease_prefix(TENANT)}{second.gen:012d}.json"], "older generations are cleaned up"


async def test_concurrent_acquirers_have_exactly_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(try_acquire(store, TENANT) for _ in range(8)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, StoreLocked) for r in results if r not in winners)


async def test_holder_killed_on_this_host_frees_the_lease_at_once(store: Store) -> None:
    await _plant(store, 1, pid=_dead_pid())
    lease = await try_acquire(store, TENANT)
    assert lease.gen == 2


async def test_reused_pid_is_not_taken_for_the_holder(store: Store) -> None:
    await _plant(store, 1, pid_start="1")  # our pid, but a process that started at another instant
    assert (await try_acquire(store, TENANT)).gen == 2


async def test_holder_on_another_host_holds_until_expiry(store: Store) -> None:
    await _plant(store, 1, host="collector-b.example", pid=1)
    with pytest.raises(StoreLocked) as err:
        await try_acquire(store, TENANT)
    assert "collector-b.example" in str(err.value)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await _plant(store, 2, host="collector-b.example", pid=1, expires=format_time(past))
    assert (await try_acquire(store, TENANT)).gen == 3


async def test_renewal_extends_a_remote_holder(store: Store) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await _plant(store, 1, host="collector-b.example", pid=1, expires=format_time(past))
    later = format_time(datetime.now(UTC) + timedelta(minutes=1))
    await store.put(f"{lease_prefix(TENANT)}{1:012d}.renew", orjson.dumps({"expires": later}), overwrite=True)
    with pytest.raises(StoreLocked):
        await try_acquire(store, TENANT)


async def test_taken_over_holder_notices_before_moving_a_cursor(store: Store) -> None:
    lease = await try_acquire(store, TENANT, ttl=timedelta(seconds=3))
    await _plant(store, lease.gen + 1, host="collector-b.example", pid=1)  # took over after our expiry
    await lease.renew()
    with pytest.raises(LeaseLost):
        lease.check()


async def test_tenant_leases_share_one_lease_between_passes(store: Store) -> None:
    leases = TenantLeases(store)
    async with leases.hold(TENANT) as a, leases.hold(TENANT) as b:
        assert a is b
        with pytest.raises(StoreLocked):
            await try_acquire(store, TENANT)
    assert (await try_acquire(store, TENANT)).gen == a.gen + 1, "released when the last pass ended"


async def test_waiting_collector_gets_the_lease_when_the_holder_lets_go(store: Store) -> None:
    first = await try_acquire(store, TENANT)
    waiting = asyncio.ensure_future(TenantLeases(store, wait=True)._enter(TENANT))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await first.release()
    lease = await asyncio.wait_for(waiting, timeout=10)
    assert lease.gen == first.gen + 1
    await lease.release()
