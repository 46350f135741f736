"""What `agent verify` found: each kind of damage as a typed value naming the object or seq to restore,
and the report that gathers them. `VerifyReport.to_json` is the `--format json` output; the text a
terminal shows is drawn by the CLI (`agent.cli.render.verify_text`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    """A segment that is missing or altered, and the manifest that vouches for it."""

    tenant: str
    stream: str
    key: str
    manifest: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A broken link in a stream's manifest chain.

    kind: "missing" (no manifest at this seq), "altered" (its bytes differ from the hash its
    successor recorded), "misplaced" (its content claims another seq, tenant or stream),
    "unreadable" (not a manifest), "genesis" (seq 0 claims a predecessor).
    """

    tenant: str
    stream: str
    seq: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    """The chain disagrees with the heads an anchor holds.

    kind: "stream-missing" (anchored heads, no manifest: the stream was deleted), "truncated" (the
    chain ends before the newest anchored head: tail cut or store rolled back), "rewritten" (a
    manifest hashes differently than anchored: edited and re-hashed forward), "miscounted" (the
    chain's cumulative record count differs from the anchored one).
    """

    tenant: str
    stream: str
    anchor: str
    seq: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class HiddenObject:
    """An S3 object whose current version is a delete marker while a stored version still exists."""

    key: str
    marker_version: str
    kept_version: str

    def restore(self, bucket: str, prefix: str) -> str:
        return (f"aws s3api delete-object --bucket {bucket} --key {prefix}{self.key} "
                f"--version-id {self.marker_version}")


# What verify cannot see from the store alone; said plainly when no anchor is configured.
UNDETECTABLE_WITHOUT_ANCHORS = (
    "tail truncation (the newest manifest removed with its segments and sidecars)",
    "deletion of a whole stream",
    "a record removed with its segment, sidecar and the newest manifest rewritten consistently",
    "an old segment edited and the whole chain re-hashed forward",
    "a rollback of the store (and its checkpoints) to an older consistent state",
)


@dataclass(slots=True)
class VerifyReport:
    streams: int = 0
    manifests: int = 0
    segments: int = 0
    missing: list[SegmentProblem] = field(default_factory=list)
    altered: list[SegmentProblem] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    broken_links: list[ChainBreak] = field(default_factory=list)
    sidecars: list[SegmentProblem] = field(default_factory=list)  # missing or altered id indexes
    anchor_problems: list[AnchorProblem] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # segments refused as not written by this agent
    hidden: list[HiddenObject] = field(default_factory=list)  # S3 delete markers over kept versions
    anchors: int = 0  # anchors consulted
    unanchored: dict[str, int] = field(default_factory=dict)  # "tenant/stream" -> manifests past the newest head
    unhashed_sidecars: int = 0  # sidecars of manifests written before sidecar hashes: not checkable
    never_anchored: list[str] = field(default_factory=list)  # "tenant/stream" with a chain but no anchored head
    versions_unchecked: str = ""  # why object versions (S3 delete markers) could not be listed
    restore_bucket: str = ""
    restore_prefix: str = ""

    def absorb(self, other: VerifyReport) -> None:
        """Add the findings of streams verified on their own (see `verify._verify_settled`)."""
        self.streams += other.streams
        self.manifests += other.manifests
        self.segments += other.segments
        self.unhashed_sidecars += other.unhashed_sidecars
        self.unanchored.update(other.unanchored)
        self.unexpected += other.unexpected
        self.broken_links += other.broken_links
        self.anchor_problems += other.anchor_problems
        self.never_anchored += other.never_anchored
        for mine, theirs in ((self.missing, other.missing), (self.altered, other.altered),
                             (self.sidecars, other.sidecars)):
            mine += theirs
            mine.sort(key=lambda p: p.key)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unexpected or self.broken_links or self.sidecars
                    or self.anchor_problems or self.quarantined or self.hidden)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok,
                "checked": {"streams": self.streams, "manifests": self.manifests, "segments": self.segments,
                            "anchors": self.anchors},
                "missing": [asdict(p) for p in self.missing], "altered": [asdict(p) for p in self.altered],
                "unexpected": list(self.unexpected), "broken_links": [asdict(b) for b in self.broken_links],
                "sidecars": [asdict(p) for p in self.sidecars],
                "anchor_problems": [asdict(p) for p in self.anchor_problems],
                "quarantined": list(self.quarantined),
                "hidden": [{**asdict(h), "restore": h.restore(self.restore_bucket, self.restore_prefix)}
                           for h in self.hidden],
                "unanchored_manifests": dict(self.unanchored), "unhashed_sidecars": self.unhashed_sidecars,
                "never_anchored": list(self.never_anchored), "versions_unchecked": self.versions_unchecked,
                "undetectable": [] if self.anchors else list(UNDETECTABLE_WITHOUT_ANCHORS)}
