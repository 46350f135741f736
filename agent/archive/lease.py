"""Collection leases: one writer per tenant of a store, and a second one told who holds it.

Two collectors writing one tenant's streams race on checkpoints (`CheckpointRegression`), on the
archive's dedupe (both store the same ids) and on the status counters. A lease makes the writer
unique and names it, so the second process can say who is in the way instead of corrupting state.

The lease is per tenant, not per store, because `agent run --shard i/n` lets several agents share
one bucket with disjoint tenants (docs/scale.md). It is built only from the Store contract's
create-only put, so it behaves the same on local disk and on S3 (`If-None-Match: *`):

    _meta/lock/tenant=<t>/<gen:012d>.json       create-only: holder, acquired, expires
    _meta/lock/tenant=<t>/<gen:012d>.renew      overwritten by that holder only: a later expiry
    _meta/lock/tenant=<t>/<gen:012d>.released   create-only: the holder let go

The newest generation is the lease. It is free when released, past its expiry, or held by a process
on this host that is gone (pid absent, or reused: the kernel's start time and boot id differ), so a
SIGKILLed `agent collect` never blocks the next one for a whole TTL. Taking a free lease is a
create-only put of the next generation: of two contenders exactly one wins, the other sees the key
taken and re-reads. A holder renews every third of the TTL and, when it finds a newer generation
(it was paused past its expiry and someone took over), marks the lease lost so the collector stops
before its next checkpoint. Expiry compares wall clocks across hosts: keep them in NTP sync.

Lease objects bypass the S3 outage spool: a create-only check answered by a local spool file would
not be a check at all. While S3 is unreachable no lease can be taken, and collection pauses, as it
already does for checkpoint reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from agent.archive.codec import format_time, parse_time
from agent.archive.layout import lease_key, lease_prefix, parse_lease_key
from agent.errors import ObjectExists, ObjectNotFound, StoreError
from agent.logs import event
from agent.store.base import Store

log = logging.getLogger("agent.archive.lease")

DEFAULT_TTL = timedelta(minutes=2)
WAIT_POLL_SECONDS = 2.0


class StoreLocked(StoreError):
    """Another live process holds the collection lease of a tenant; the message names it."""


class LeaseLost(StoreError):
    """This process's lease was taken over (it was paused past its expiry); it must stop writing."""


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid
    and the boot id it names one process, so a pid reused after a crash is not taken for the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) is in parentheses and may hold spaces: split after the last ')'
    return stat.rsplit(")", 1)[-1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def this_holder() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _start_ticks(pid), "boot_id": _boot_id(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))}


def describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command') or 'agent'}), "
            f"since {holder.get('acquired')}, lease valid until {holder.get('expires')}")


@dataclass(frozen=True, slots=True)
class _Generation:
    gen: int
    holder: dict[str, Any]
    expires: datetime
    released: bool


def _gone_from_this_host(holder: dict[str, Any]) -> bool:
    """True when the holder was a process on this host that no longer runs."""
    if holder.get("host") != socket.gethostname():
        return False  # another host: only the expiry frees it
    if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
        return True  # this host rebooted since
    pid = int(holder.get("pid", 0))
    if pid <= 0 or not _pid_alive(pid):
        return True
    return bool(holder.get("pid_start")) and _start_ticks(pid) != holder.get("pid_start")


def _direct(store: Store) -> Store:
    """The store that answers now: under the outage spool, the S3 store itself (see module doc)."""
    spool = sys.modules.get("agent.store.spool")  # only loaded when an S3 store with a spool is in use
    if spool is not None and isinstance(store, spool.SpoolingStore):
        inner: Store = store.inner
        return inner
    return store


class Lease:
    """One held lease; `renew` extends it, `release` lets go. Use through `TenantLeases`."""

    def __init__(self, store: Store, tenant: str, gen: int, holder: dict[str, Any], ttl: timedelta) -> None:
        self.store, self.tenant, self.gen, self.holder, self.ttl = store, tenant, gen, holder, ttl
        self.lost: str | None = None
        self._task: asyncio.Task[None] | None = None

    def _key(self, suffix: str) -> str:
        return lease_key(self.tenant, self.gen, suffix)

    def check(self) -> None:
        """Raise LeaseLost when another process took this tenant over."""
        if self.lost:
            raise LeaseLost(self.lost)

    async def renew(self) -> None:
        newer = await _newest_gen(self.store, self.tenant)
        if newer is not None and newer > self.gen:
            self.lost = (f"the collection lease of tenant {self.tenant} was taken over by another process "
                         f"(generation {newer}) while this one held generation {self.gen}; stopping its writes")
            return
        expires = datetime.now(UTC) + self.ttl
        await self.store.put(self._key("renew"), orjson.dumps({"expires": format_time(expires)}), overwrite=True)

    def start_renewing(self) -> None:
        self._task = asyncio.create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        period = self.ttl.total_seconds() / 3
        while not self.lost:
            await asyncio.sleep(period)
            try:
                await self.renew()
            except StoreError as exc:  # S3 briefly down: try again next period; expiry says how long we have
                event(log, logging.WARNING, "Could not renew the collection lease.", tenant=self.tenant,
                      error=str(exc))

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.lost:
            return
        with contextlib.suppress(ObjectExists):
            await self.store.put(self._key("released"), b"{}")


async def _newest_gen(store: Store, tenant: str) -> int | None:
    newest = None
    async for key in store.list(lease_prefix(tenant)):
        parsed = parse_lease_key(key)
        if parsed is not None and parsed[1] == "json":
            newest = max(newest or 0, parsed[0])
    return newest


async def _read(store: Store, tenant: str, gen: int) -> _Generation:
    holder = orjson.loads(await store.get(lease_key(tenant, gen, "json")))
    expires = parse_time(holder["expires"])
    with contextlib.suppress(ObjectNotFound):
        expires = max(expires, parse_time(orjson.loads(await store.get(lease_key(tenant, gen, "renew")))["expires"]))
    return _Generation(gen, holder, expires, await store.exists(lease_key(tenant, gen, "released")))


def _is_free(current: _Generation, now: datetime) -> bool:
    return current.released or current.expires <= now or _gone_from_this_host(current.holder)


async def held_by(store: Store, tenant: str) -> int | None:
    """The generation of the tenant's lease while a live process holds it (None when it is free):
    what a reader that must not mistake a write in flight for damage (`agent verify`) asks."""
    store = _direct(store)
    newest = None
    for _ in range(5):  # a generation forgotten while we read it was taken over: look again
        newest = await _newest_gen(store, tenant)
        if newest is None:
            return None
        try:
            current = await _read(store, tenant, newest)
        except ObjectNotFound:
            continue
        except (ValueError, KeyError, orjson.JSONDecodeError):
            return None  # damaged: free, as `try_acquire` sees it
        return None if _is_free(current, datetime.now(UTC)) else newest
    return newest


async def try_acquire(store: Store, tenant: str, ttl: timedelta = DEFAULT_TTL) -> Lease:
    """Take the tenant's lease or raise StoreLocked naming the live holder."""
    store = _direct(store)
    for _ in range(5):  # each lost race means another process just took it; re-read and decide again
        newest = await _newest_gen(store, tenant)
        if newest is not None:
            try:
                current = await _read(store, tenant, newest)
            except (ObjectNotFound, ValueError, KeyError, orjson.JSONDecodeError):
                current = _Generation(newest, {}, datetime.min.replace(tzinfo=UTC), True)  # damaged: free
            if not _is_free(current, datetime.now(UTC)):
                raise StoreLocked(f"tenant {tenant} of this store is being collected by {describe(current.holder)}; "
                                  "wait for it to finish (or pass --wait), or stop it")
        gen = (newest or 0) + 1
        now = datetime.now(UTC)
        holder = {**this_holder(), "acquired": format_time(now), "expires": format_time(now + ttl)}
        try:
            await store.put(lease_key(tenant, gen, "json"), orjson.dumps(holder))
        except ObjectExists:
            continue
        await _forget_older(store, tenant, gen)
        return Lease(store, tenant, gen, holder, ttl)
    raise StoreLocked(f"tenant {tenant}: the collection lease keeps changing hands; another collector is starting")


async def _forget_older(store: Store, tenant: str, gen: int) -> None:
    """Old generations are scratch: drop them so the lock folder stays small (best effort)."""
    stale = [k async for k in store.list(lease_prefix(tenant)) if (p := parse_lease_key(k)) is not None and p[0] < gen]
    for key in stale:
        with contextlib.suppress(StoreError):
            await store.delete(key)


async def acquire(store: Store, tenant: str, *, wait: bool = False, ttl: timedelta = DEFAULT_TTL,
                  poll: float = WAIT_POLL_SECONDS) -> Lease:
    """`try_acquire`, or with `wait` keep trying until the holder lets go (saying once who it is)."""
    said = False
    while True:
        try:
            return await try_acquire(store, tenant, ttl)
        except StoreLocked as exc:
            if not wait:
                raise
            if not said:
                event(log, logging.WARNING, "Waiting for another collector to release the store.", tenant=tenant,
                      holder=str(exc))
                said = True
        await asyncio.sleep(poll)


class TenantLeases:
    """The leases one process holds, counted: concurrent stream passes of a tenant share one lease,
    taken by the first and released by the last, so a lease is held exactly while this process writes."""

    def __init__(self, store: Store, *, wait: bool = False, ttl: timedelta = DEFAULT_TTL) -> None:
        self.store, self.wait, self.ttl = store, wait, ttl
        self._held: dict[str, tuple[Lease, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def check(self, tenant: str) -> None:
        """Raise LeaseLost if this process's lease of `tenant` was taken over (call before moving a cursor)."""
        if tenant in self._held:
            self._held[tenant][0].check()

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str) -> AsyncIterator[Lease]:
        lease = await self._enter(tenant)
        try:
            yield lease
        finally:
            await self._exit(tenant)

    async def _enter(self, tenant: str) -> Lease:
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            if tenant in self._held:
                lease, n = self._held[tenant]
                self._held[tenant] = (lease, n + 1)
                return lease
            started = time.monotonic()
            lease = await acquire(self.store, tenant, wait=self.wait, ttl=self.ttl)
            if time.monotonic() - started > 1:
                event(log, logging.INFO, "Collection lease taken.", tenant=tenant, generation=lease.gen)
            lease.start_renewing()
            self._held[tenant] = (lease, 1)
            return lease

    async def _exit(self, tenant: str) -> None:
        async with self._locks[tenant]:
            lease, n = self._held[tenant]
            if n > 1:
                self._held[tenant] = (lease, n - 1)
                return
            del self._held[tenant]
            try:
                await lease.release()
            except StoreError as exc:  # it expires by itself; the next collector waits at most one TTL
                event(log, logging.WARNING, "Could not release the collection lease.", tenant=tenant, error=str(exc))
