"""Entra's summarized sign-ins (beta): per-window sign-in counts grouped by user, app and IP.

`GET /beta/auditLogs/getSummarizedNonInteractiveSignIns(aggregationWindow='h1'|'h6'|'d1')` and its
ServicePrincipal / Msi siblings return a `summarizedSignIn` collection: `signInCount` per
(`aggregationDateTime`, `userPrincipalName`, `appId`, `ipAddress`) with the window's
`firstSignInDateTime` (microsoft-graph-docs-contrib api-reference/beta/api/
auditlogroot-getsummarizednoninteractivesignins.md and resources/summarizedsignin.md, Aug 2025;
permission AuditLog.Read.All, beta only).

Modelling assumption (confidence low-medium, no public statement either way): the summary is
computed from Entra's own sign-in store, not from the Graph list pipeline, so it counts the events an
`[[upstream.gaps]]` took from `auditLogs/signIns` as well. That is what makes it a witness where no
sibling pipeline exists. Each distinct event counts once (a duplicated serving is one event), and an
event counts once its time has passed (the summary is not modelled as lagging).

Not modelled: `$filter` (documented on the grouping properties, not on aggregationDateTime; refused
here with 400 rather than half-implemented), `$select`, `$orderby`. The page size (1,000) is the
emulator's choice; the documentation names none, so clients must follow `@odata.nextLink`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import orjson
from aiohttp import web

from emulator.world.clock import TICKS_PER_SECOND, now_ticks, rfc3339
from emulator.world.dataset import StreamData

FUNCTIONS = {  # lower-cased function name -> the stream whose events it counts
    "getsummarizednoninteractivesignins": "graph.signins.noninteractive",
    "getsummarizedserviceprincipalsignins": "graph.signins.serviceprincipal",
    "getsummarizedmsisignins": "graph.signins.managedidentity",
}
WINDOWS = {"h1": 3600, "h6": 6 * 3600, "d1": 86400}  # aggregationWindow enum (function parameters table)
PAGE = 1000


def parse_call(path: str) -> tuple[str, str] | None:
    """('auditlogs/getsummarized...signins(aggregationwindow='d1')' lower-cased) -> (function, window).

    None when the path is not one of these functions; ('', text) when the parameter is malformed.
    """
    if not path.startswith("auditlogs/getsummarized"):
        return None
    name, _, rest = path[len("auditlogs/"):].partition("(")
    if name not in FUNCTIONS:
        return None
    arg = rest.removesuffix(")")
    key, _, value = arg.partition("=")
    if key.strip() != "aggregationwindow" or not (value.startswith("'") and value.endswith("'")):
        return "", arg
    return name, value.strip("'")


def rows(sd: StreamData | None, window: str, now: int, tenant: str) -> list[dict[str, Any]]:
    """The summary rows of one stream: served and upstream-lost events alike (see the module docs)."""
    if sd is None:
        return []
    size = WINDOWS[window] * TICKS_PER_SECOND
    groups: dict[tuple[int, str, str, str], list[int]] = defaultdict(list)
    for e in [*sd.entries, *sd.lost]:
        if e.ticks > now:
            continue
        rec = orjson.loads(e.body)
        key = (e.ticks - e.ticks % size, str(rec.get("userPrincipalName") or "").lower(),
               str(rec.get("appId") or ""), str(rec.get("ipAddress") or ""))
        groups[key].append(e.ticks)
    out = []
    for (start, upn, app, ip), ticks in sorted(groups.items()):
        out.append({
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}|{sd.info.name}|{window}|{start}|{upn}|{app}|{ip}")),
            "signInCount": len(ticks), "aggregationDateTime": rfc3339(start),
            "firstSignInDateTime": rfc3339(min(ticks)), "userPrincipalName": upn or None, "appId": app,
            "ipAddress": ip or None, "tenantId": tenant,
        })
    return out


def respond(request: web.Request, sd: StreamData | None, window: str, tenant: str, skip: int) -> web.Response:
    """One page of the collection, with `@odata.nextLink` ($skiptoken = offset) while more remain."""
    everything = rows(sd, window, now_ticks(), tenant)
    body: dict[str, Any] = {"@odata.context": f"https://{request.host}/beta/$metadata#"
                                              "Collection(microsoft.graph.summarizedSignIn)"}
    if skip + PAGE < len(everything):
        body["@odata.nextLink"] = str(request.url.with_query({"$skiptoken": str(skip + PAGE)}))
    body["value"] = everything[skip:skip + PAGE]
    rid = str(uuid.uuid4())
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"request-id": rid})
