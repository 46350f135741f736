"""The Siem protocol every reader implements, the Writer protocol every backfill writer implements,
what a stream looks like inside a SIEM, and the validation that keeps anything but checked ids and
times out of a SIEM query.

Queries are text (KQL, SPL, Elasticsearch JSON), so an id copied from a record into a query could
be an injection. Every value that reaches a query goes through `valid_id`, `valid_name` or
`valid_value` first; times are formatted by us from datetimes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from agent.errors import AgentError, ConfigError
from agent.sources.base import Window

TokenSource = Callable[[], Awaitable[str]]

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# directoryAudit ids are not GUIDs: Directory_<guid>_<5 chars>_<n>, SSGM_<guid>_MCDC4_88453290 (protocols §1.7).
_TOKEN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# directoryAudit ids are not GUIDs; nor are Defender ids ("da637551227677560813_-961444813", "2972395")
_TOKEN_ID_STREAMS = frozenset({"graph.directory_audits", "graph.provisioning", "graph.security_alerts",
                               "graph.security_incidents"})
# Table, index, sourcetype and field names: letters, digits and the punctuation real names use.
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:*{}@-]{1,200}$")
# Filter values (workload names, record types, categories): no quotes, spaces or operators.
_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


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


def valid_id(stream: str, value: str) -> bool:
    """True if `value` has the documented id form of the stream (GUID, or the directoryAudit form)."""
    if _GUID_RE.match(value):
        return True
    return stream in _TOKEN_ID_STREAMS and bool(_TOKEN_ID_RE.match(value))


def valid_name(value: str, what: str) -> str:
    """A table, index, sourcetype or field name safe to put in a query; ConfigError otherwise."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(f"{what}: {value!r} is not a valid name (letters, digits, _ . : - * @ {{}})")
    return value


def valid_value(value: str, what: str) -> str:
    """A filter value safe to quote in a query; ConfigError otherwise."""
    if not isinstance(value, str) or not _VALUE_RE.match(value):
        raise ConfigError(f"{what}: {value!r} is not a valid filter value (letters, digits, _ . : -)")
    return value


@dataclass(frozen=True, slots=True)
class Filter:
    """`field` in `values` (or not in, when `negate`): how one SIEM table holds several streams."""

    field: str
    values: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Where one stream lives in the SIEM and which columns hold its id, event time and tenant."""

    source: str  # Sentinel table, Elasticsearch index pattern, Splunk sourcetype
    id_field: str
    time_field: str
    tenant_field: str = ""  # "" = the SIEM holds one tenant only; no tenant filter
    filters: tuple[Filter, ...] = ()
    index: str = ""  # Splunk index (other SIEMs: unused)
    extra_sources: tuple[str, ...] = field(default=())  # e.g. Sentinel backfill tables, unioned
    backfill_to: str = ""  # where backfill writes: Sentinel DCR stream, Elasticsearch index (Splunk: source)
    # Sentinel: the record's own event-time column (CreatedDateTime, ActivityDateTime) when
    # `time_field` (TimeGenerated) may be arrival time; "" = `time_field` is the event time.
    event_field: str = ""


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
