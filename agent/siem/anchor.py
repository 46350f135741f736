"""Chain-head anchors held by the SIEM (`[[anchors]] type = "siem"`): what every vendor's shares.

An attacker in the archive's bucket does not control the SIEM, so a head written there is out of
reach of the store's writer. Heads go through the backfill write path (`agent.siem.<vendor>.anchor`):
- Elasticsearch (`ElasticWriter`): `_bulk` `create` with `_id` = the head's key, so a head is written
  once and a resend is a 409, into one index (default `ms-log-agent-chain-heads`); read back with a
  point in time + `search_after`.
- Splunk (`SplunkWriter`): one HEC event per head, sourcetype `ms-log-agent:chain_head`, in the
  configured index (default `main`), indexer-acknowledged; read back with the search export. HEC has
  no create-once, so a resend can index a head twice: identical heads are counted once.
- Sentinel (Logs Ingestion, as backfill writes): one row per head in the custom table
  `MsLogAgentChainHeads_CL` (columns `Tenant`, `Stream`, `Seq`, `Sha256`, `Records`, `Manifest`)
  through the DCR stream `Custom-MsLogAgentChainHeads_CL`; read back with the Log Analytics query
  API. Logs Ingestion has no create-once either: identical heads are counted once. Only the
  validated table name reaches the query; tenant and stream are filtered here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.siem.base import answer_shape


def head_doc(head: Any, manifest_key: str) -> dict[str, Any]:
    return {"tenant": head.tenant, "stream": head.stream, "seq": head.seq, "sha256": head.sha256,
            "records": head.records, "manifest": manifest_key}


# the start of every read of all heads: older than any head the agent can have written
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


# (tenant, stream, seq, sha256, records) -> the archive's Head: passed in by `agent.archive.anchors`,
# which owns the type, so the SIEM side never imports the archive's anchors back
MakeHead = Callable[[str, str, int, str, int], Any]


def parse_heads(docs: Iterable[Any], make: MakeHead) -> list[Any]:
    """Heads from the SIEM's documents, once each, in (tenant, stream, seq) order."""
    found: set[Any] = set()
    for h in docs:
        with answer_shape("the SIEM"):
            found.add(make(str(h["tenant"]), str(h["stream"]), int(h["seq"]), str(h["sha256"]), int(h["records"])))
    return sorted(found, key=lambda h: (h.tenant, h.stream, h.seq))


class HeadSink(Protocol):
    """**Protocol:** a SIEM that holds chain heads (`agent.archive.anchors.Sink` with the SIEM behind it)."""

    label: str

    async def publish(self, head: Any, manifest_key: str) -> None: ...
    async def heads(self, tenant: str | None = None, stream: str | None = None) -> list[Any]: ...
    async def aclose(self) -> None: ...
