"""Graph service communications: admin/serviceAnnouncement/issues and messages (protocols.md §1.8).

A handful of seeded items per tenant (`[graph] issues`, `messages`), paged with `$top` (messages
default to 100 per page, `Prefer: odata.maxpagesize` up to 1000) and an opaque `$skiptoken`.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from emulator.world.clock import TICKS_PER_SECOND

_SERVICES = (
    "Exchange Online",
    "Microsoft Teams",
    "SharePoint Online",
    "Microsoft Entra",
    "Microsoft 365 suite",
)
_MAXPAGE_RE = re.compile(r"odata\.maxpagesize=(\d+)")


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def issues(seed: int, tenant: str, count: int, origin: int) -> list[dict[str, Any]]:
    """serviceHealthIssue objects, newest first."""
    rng = random.Random(f"{seed}|issues|{tenant}")
    base = datetime.fromtimestamp(origin / TICKS_PER_SECOND, UTC).replace(microsecond=0)
    out = []
    for n in range(count):
        start = base - timedelta(hours=rng.randint(1, 96))
        resolved = rng.random() < 0.5
        service = rng.choice(_SERVICES)
        out.append(
            {
                "startDateTime": _stamp(start),
                "endDateTime": _stamp(start + timedelta(hours=6)) if resolved else None,
                "lastModifiedDateTime": _stamp(start + timedelta(minutes=30)),
                "title": f"Some users may be unable to access {service}",
                "id": f"{rng.choice(('EX', 'TM', 'SP', 'MO'))}{rng.randint(100000, 999999)}",
                "impactDescription": f"Users may be unable to access {service} features.",
                "classification": rng.choice(("advisory", "incident")),
                "origin": "microsoft",
                "status": "serviceRestored" if resolved else "serviceDegradation",
                "service": service,
                "feature": "Service access",
                "featureGroup": "Service access",
                "isResolved": resolved,
                "highImpact": None,
                "details": [],
                "posts": [
                    {
                        "createdDateTime": _stamp(start + timedelta(minutes=30)),
                        "postType": "regular",
                        "description": {
                            "contentType": "html",
                            "content": f"Title: Issue #{n}<br>User impact: ...",
                        },
                    }
                ],
            }
        )
    return sorted(out, key=lambda i: i["startDateTime"], reverse=True)


def messages(seed: int, tenant: str, count: int, origin: int) -> list[dict[str, Any]]:
    """serviceUpdateMessage objects (Message center), newest first."""
    rng = random.Random(f"{seed}|messages|{tenant}")
    base = datetime.fromtimestamp(origin / TICKS_PER_SECOND, UTC).replace(microsecond=0)
    out = []
    for _ in range(count):
        start = base - timedelta(days=rng.randint(1, 30))
        out.append(
            {
                "startDateTime": _stamp(start),
                "endDateTime": _stamp(start + timedelta(days=60)),
                "lastModifiedDateTime": _stamp(start + timedelta(hours=2)),
                "title": "Plan for change: an update to a feature you use",
                "id": f"MC{rng.randint(100000, 999999)}",
                "category": rng.choice(("planForChange", "stayInformed", "preventOrFixIssue")),
                "severity": rng.choice(("normal", "high")),
                "tags": ["Updated message", "User impact"],
                "isMajorChange": rng.random() < 0.2,
                "actionRequiredByDateTime": None,
                "services": [rng.choice(_SERVICES)],
                "expiryDateTime": None,
                "hasAttachments": False,
                "viewPoint": None,
                "details": [],
                "body": {"contentType": "html", "content": "<p>We are making a change.</p>"},
            }
        )
    return sorted(out, key=lambda i: i["startDateTime"], reverse=True)


def page_size(top: str | None, prefer: str | None, default: int) -> int:
    """`$top` wins, then `Prefer: odata.maxpagesize`, else the endpoint default; at most 1000."""
    if top is not None:
        return max(1, min(int(top), 1000))
    m = _MAXPAGE_RE.search(prefer or "")
    return max(1, min(int(m.group(1)), 1000)) if m else default
