"""A published chain head: which manifest of a stream's chain an anchor vouches for, and its key.

A leaf of its own: the archive's anchors and the SIEM anchors (agent/siem/anchor.py) both build
heads, and neither has to import the other for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD_RE = re.compile(r"^heads/tenant=(?P<tenant>[^/]+)/stream=(?P<stream>[^/]+)/"
                      r"(?P<seq>\d{12})\.(?P<sha>[0-9a-f]{64})\.(?P<records>\d+)\.json$")


@dataclass(frozen=True, slots=True)
class Head:
    """One published chain head: the manifest at `seq` hashed to `sha256`, and the chain held
    `records` records through it."""

    tenant: str
    stream: str
    seq: int
    sha256: str
    records: int

    @property
    def key(self) -> str:
        return f"heads/tenant={self.tenant}/stream={self.stream}/{self.seq:012d}.{self.sha256}.{self.records}.json"

    @classmethod
    def parse(cls, key: str) -> Head | None:
        m = _HEAD_RE.match(key)
        if m is None:
            return None
        return cls(m["tenant"], m["stream"], int(m["seq"]), m["sha"], int(m["records"]))
