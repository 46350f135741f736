"""The Siem protocol every reader implements, the Writer protocol every backfill writer implements,
what a stream looks like inside a SIEM, and the validation that keeps anything but checked ids and
times out of a SIEM query.

Queries are text (KQL, SPL, Elasticsearch JSON), so an id copied from a record into a query could
be an injection. Every value that reaches a query goes through `valid_id`, `valid_name` or
`valid_value` first; times are formatted by us from datetimes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from agent.errors import AgentError
from agent.siem.targets import Filter, Target, valid_id, valid_name, valid_value
from agent.sources.base import Window

TokenSource = Callable[[], Awaitable[str]]
__all__ = ["BackfillRefused", "Filter", "IncompleteResult", "Item", "SendResult", "Siem", "SiemError", "Target",
           "TokenSource", "TooLarge", "Writer", "answer_shape", "bucket_start", "kql_time", "valid_id", "valid_name",
           "valid_value"]

class SiemError(AgentError):
    """The SIEM could not answer; nothing may be concluded about the window asked."""


class IncompleteResult(SiemError):
    """The SIEM answered only part of a query (a partial result, a result limit, a timeout).

    Never read as "missing": the engine subdivides the bucket or reports it as unverified.
    `splittable` is False when a smaller query would fail the same way (a search peer or shard
    down): the bucket is then reported unverified at once instead of being split.
    """

    def __init__(self, message: str, *, splittable: bool = True) -> None:
        super().__init__(message)
        self.splittable = splittable


@contextlib.contextmanager
def answer_shape(what: str) -> Iterator[None]:
    """Read a SIEM answer inside this: a missing key or a value of the wrong type (what a proxy, a
    version change or a broken server can send) becomes SiemError instead of a crash."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise SiemError(f"{what} answered in an unexpected shape ({type(exc).__name__})") from None


@runtime_checkable
class Siem(Protocol):
    """**Protocol:** read access to the primary SIEM, enough to reconcile the archive against it.

    All times are UTC; windows are half-open [start, end) on the record's event time.
    """

    name: ClassVar[str]

    async def check(self) -> None:
        """Run a tiny real query; raises SiemError (or ConfigError) if the SIEM cannot be read."""
        ...

    async def count_buckets(self, tenant: str, stream: str, window: Window,
                            bucket: timedelta) -> dict[datetime, tuple[int, int]]:
        """One aggregation query: bucket start -> (rows, distinct ids); empty buckets may be absent."""
        ...

    def ids(self, tenant: str, stream: str, window: Window) -> AsyncIterator[str]:
        """Every id row in the window (a duplicated record yields its id twice)."""
        ...

    async def present(self, tenant: str, stream: str, ids: Sequence[str], window: Window) -> set[str]:
        """Which of `ids` (validated by the caller) the SIEM holds in the window; one query per call."""
        ...

    async def aclose(self) -> None:
        """Release what the adapter holds (PITs, sessions it owns)."""
        ...


Item = tuple[str, bytes]  # (record id, the encoded row / event / action+document)


class TooLarge(Exception):
    """The SIEM refused the request for its size; split the batch."""


class BackfillRefused(AgentError):
    """The SIEM refused the backfill in a way no retry fixes (credentials, DCR, stream, index, token)."""


@dataclass
class SendResult:
    """What the SIEM answered for each id of one batch.

    `acked` (it took it), `present` (it already had it), `failed` (it refused it: not stored),
    `in_doubt` (the request may or may not have been stored: a 5xx after the body went out, a
    dropped connection, an ack that never came).
    """

    acked: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    in_doubt: set[str] = field(default_factory=set)
    # accepted by a SIEM that confirms nothing more (HEC without indexer acknowledgement): in doubt
    # until a search finds them; a subset of `in_doubt`
    unconfirmed: set[str] = field(default_factory=set)
    requests: int = 0


class Writer(Protocol):
    """**Protocol:** the backfill write path of one SIEM.

    A writer sends one batch and says, per id, what the SIEM answered (`SendResult`). It retries on
    its own only what is certainly not stored (429, HEC "server is busy", `_bulk` item 429s) or
    idempotent (`_bulk` `create` with `_id`). A batch over the SIEM's size limit raises TooLarge
    (the engine splits it); an error no retry can fix (credentials, a DCR or index that does not
    exist) raises BackfillRefused.
    """

    kind: ClassVar[str]
    identity: str  # the ledger keeps one account per identity (endpoint + DCR, HEC URL + index, cluster)
    # how long, and how often, the engine searches for records the SIEM took without confirming them
    # (`SendResult.unconfirmed`), before leaving them in doubt for a later run
    confirm_timeout: timedelta
    confirm_interval: timedelta

    def destination(self, stream: str) -> str: ...
    def encode(self, tenant: str, stream: str, rec: dict[str, Any], now: datetime) -> bytes: ...
    def body_size(self, items: Sequence[Item]) -> int: ...
    def whole(self, stream: str, rec: dict[str, Any]) -> bool: ...
    async def send(self, tenant: str, stream: str, items: Sequence[Item]) -> SendResult: ...


def bucket_start(when: datetime, bucket: timedelta) -> datetime:
    """The start of the bucket holding `when`; buckets are aligned on the Unix epoch, as bin() does."""
    seconds = int(bucket.total_seconds())
    epoch = int(when.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def kql_time(dt: datetime) -> str:
    """A UTC instant as a literal every query language here accepts (RFC 3339, microseconds)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
