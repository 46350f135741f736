"""What a Graph audit log list request asks for: its query options (OData names, beta's optional
`$`), the `$filter` on the time field with the operators each list documents, `$orderby`, `$top`,
the `$skiptoken` cursor and the tenant's retention, turned into a `Query` for `graph_paging`; and,
for the fault log, the span of records a request would have served.
"""

from __future__ import annotations

from aiohttp import web

from emulator.microsoft import odata
from emulator.microsoft.graph_errors import GraphError, licence_refusal
from emulator.microsoft.graph_paging import Query, decode_cursor
from emulator.microsoft.tokens import Claims
from emulator.world.catalog import EVENT_TYPES
from emulator.world.clock import TICKS_PER_SECOND, now_ticks, rfc3339
from emulator.world.state import State

MAX_TOP = 1000
RETENTION_DAYS = {"free": 7, "p1": 30, "p2": 30}
RESOURCES = {
    "auditlogs/signins": ("auditLogs/signIns", "createdDateTime"),
    "auditlogs/directoryaudits": ("auditLogs/directoryAudits", "activityDateTime"),
    "auditlogs/provisioning": ("auditLogs/provisioning", "activityDateTime"),
}
# The comparison operators each list documents on its time field, the rest answered 400 like any
# unsupported filter: signIns `eq`, `le`, `ge` (v1.0 signin-list.md; beta examples add `lt`),
# directoryAudits `eq`, `ge`, `le` (directoryaudit-list.md), provisioning `eq`, `gt`, `lt` only
# (provisioningobjectsummary-list.md: "$filter (eq, contains, gt, lt)").
TIME_OPS = {
    "auditlogs/signins": frozenset({"eq", "ge", "le", "lt"}),
    "auditlogs/directoryaudits": frozenset({"eq", "ge", "le"}),
    "auditlogs/provisioning": frozenset({"eq", "gt", "lt"}),
}
# provisioningobjectsummary-list.md promises no order (signIns and directoryAudits document newest
# first): without `$orderby` the emulator serves provisioning in a fixed pseudo-random order, so a
# client that assumes time order (stops early, or pages by the last time seen) loses records here.
UNORDERED = frozenset({"auditlogs/provisioning"})
_STREAM_BY_PATH = {
    "auditlogs/directoryaudits": "graph.directory_audits",
    "auditlogs/provisioning": "graph.provisioning",
}

_ALLOWED_OPTIONS = {"$filter", "$top", "$skiptoken", "$orderby"}
_ORDER_DIRECTIONS = {"asc": True, "desc": False}
# OData system query options (without their `$`), which beta reads with or without the prefix
_ODATA_OPTIONS = ("filter", "top", "skiptoken", "orderby", "select", "expand", "count", "search", "skip", "format")


def options(request: web.Request, version: str) -> dict[str, str]:
    """Query options by lower-cased name: OData system query option names are case-insensitive
    (`$FILTER` = `$filter`, OData 4.01 §5.1), and on the beta endpoint "the $ prefix is optional"
    (learn.microsoft.com/graph/query-parameters), so beta's `filter=` is `$filter=`. On v1.0 the
    prefix is optional "for only a subset of APIs"; the audit log lists are not documented among
    them, so a bare name there stays an ignored custom parameter."""
    params = {k.lower(): v for k, v in request.query.items()}
    if version == "beta":
        for name in _ODATA_OPTIONS:
            if name in params and f"${name}" not in params:
                params[f"${name}"] = params.pop(name)
    return params


def ascending(params: dict[str, str], time_field: str) -> bool:
    """`$orderby`: the list's time field, `asc` or `desc` (default desc; names and directions
    case-insensitive). Documented for signIns (createdDateTime) and directoryAudits/provisioning
    (activityDateTime); ordering by any other property is refused."""
    value = params.get("$orderby")
    if value is None:
        return False
    words = value.replace("%20", " ").split()  # a double-encoded space, as the docs sometimes advise
    if 1 <= len(words) <= 2 and words[0].lower() == time_field.lower():
        direction = words[1].lower() if len(words) == 2 else "asc"  # OData: asc when not given
        if direction in _ORDER_DIRECTIONS:
            return _ORDER_DIRECTIONS[direction]
    raise GraphError(
        400,
        "invalidRequest",
        f"Invalid $orderby '{value}': this list can only be ordered by {time_field} asc or desc.",
    )


def stream_names(path: str, flt: odata.Filter) -> list[str]:
    """The streams a list request reads (sign-ins: by event type, interactive by default)."""
    if path == "auditlogs/signins":
        return [EVENT_TYPES[t] for t in sorted(flt.event_types or {"interactiveUser"}) if t in EVENT_TYPES]
    return [_STREAM_BY_PATH[path]]


def covers(request: web.Request) -> dict[str, object]:
    """For the fault log: the streams and the span of event times this list request (and the
    nextLinks after it) would have served: newest = the cursor or the filter's upper bound."""
    version = request.match_info.get("version", "")
    path = request.match_info.get("path", "").rstrip("/").lower()
    if path not in RESOURCES:
        return {}
    params = options(request, version)
    try:
        flt = (
            odata.parse(params["$filter"], RESOURCES[path][1], path == "auditlogs/signins" and version == "beta")
            if params.get("$filter", "").strip()
            else odata.Filter()
        )
        cursor = decode_cursor(params["$skiptoken"]) if "$skiptoken" in params else None
        up = ascending(params, RESOURCES[path][1])
    except (odata.FilterError, GraphError):
        return {}
    newest, oldest = flt.hi, flt.lo
    if path in UNORDERED and "$orderby" not in params:
        cursor = None  # a place in the shuffled serving order, not a time: only the filter bounds the span
    if cursor is not None and up:  # oldest first: the cursor is a lower bound
        oldest = -cursor[0] if oldest is None else max(oldest, -cursor[0])
    elif cursor is not None:
        newest = -cursor[0] if newest is None else min(newest, -cursor[0])
    return {
        "streams": stream_names(path, flt),
        "newest": None if newest is None else rfc3339(newest),
        "oldest": None if oldest is None else rfc3339(oldest),
    }


def build_query(state: State, request: web.Request, version: str, path: str, claims: Claims) -> Query:
    """The `Query` of one list request; a refused option, filter, order or page size is a GraphError."""
    tenant = state.scenario.tenant(claims.tenant)
    assert tenant is not None  # tokens are only issued for scenario tenants
    signins = path == "auditlogs/signins"
    if signins and tenant.license == "free":
        raise licence_refusal()
    params = options(request, version)
    for key in params:
        if key.startswith("$") and key not in _ALLOWED_OPTIONS:
            raise GraphError(
                400, "invalidRequest", f"Query option '{key}' is not supported for this resource."
            )
    time_field = RESOURCES[path][1]
    try:
        flt = (
            odata.parse(params["$filter"], time_field, signins and version == "beta", TIME_OPS[path])
            if params.get("$filter", "").strip()
            else odata.Filter()
        )
    except odata.FilterError as exc:
        raise GraphError(400, "invalidRequest", str(exc)) from None
    up = ascending(params, time_field)
    top = page_size(params.get("$top"))
    names = stream_names(path, flt)
    streams = [sd for n in names if (sd := state.dataset.get(tenant.id, n)) is not None]
    cursor = decode_cursor(params["$skiptoken"]) if "$skiptoken" in params else None
    floor = now_ticks() - RETENTION_DAYS[tenant.license] * 86400 * TICKS_PER_SECOND
    return Query(
        streams=streams,
        lo=flt.lo if flt.lo is not None else 0,
        hi=flt.hi,
        ids=flt.ids,
        top=top,
        cursor=cursor,
        retention_floor=floor,
        ascending=up,
        unordered=path in UNORDERED and "$orderby" not in params,
    )


def page_size(value: str | None) -> int:
    """`$top`: 1 to 1000 (the default when absent); anything else is refused."""
    if value is None:
        return MAX_TOP
    try:
        top = int(value)
    except ValueError:
        top = -1
    if not 1 <= top <= MAX_TOP:
        raise GraphError(
            400,
            "invalidRequest",
            f"Invalid page size specified: '{value}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    return top
