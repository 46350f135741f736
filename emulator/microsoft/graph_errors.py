"""Graph's error answers: the `{"error": {"code", "message", "innerError"}}` envelope with its
request-id headers (protocols.md §1.6), and the refusals the Graph listener gives: a bad or expired
token, the licence refusal, throttling and the transient 5xx answers.
"""

from __future__ import annotations

import math
import uuid

import orjson
from aiohttp import web

from emulator.world.clock import http_date_short, now_ticks


class GraphError(Exception):
    """A refusal in Graph's terms: HTTP status, error code, message, extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(request: web.Request, err: GraphError) -> web.Response:
    """Graph's error envelope (protocols.md §1.6), with request-id headers."""
    rid = str(uuid.uuid4())
    inner = {
        "date": http_date_short(now_ticks()),
        "request-id": rid,
        "client-request-id": request.headers.get("client-request-id", rid),
    }
    if err.status == 429:
        inner.update({"code": "429", "message": "Please retry after", "status": "429"})
    body = {"error": {"code": err.code, "message": err.message, "innerError": inner}}
    headers = {"request-id": rid, "client-request-id": inner["client-request-id"], **err.headers}
    return web.Response(
        status=err.status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def unauthorized(message: str) -> GraphError:
    return GraphError(
        401,
        "InvalidAuthenticationToken",
        message,
        {
            "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
            'authorize", client_id="00000003-0000-0000-c000-000000000000"'
        },
    )


def licence_refusal() -> GraphError:
    """Sign-ins need Entra ID P1/P2 (signin-list.md); the answer a free tenant gets."""
    return GraphError(
        403,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        "Neither tenant is B2C or tenant doesn't have premium license",
    )


def throttled(retry_after: float) -> GraphError:
    """429 with a whole-second Retry-After (at least 1), as the reports quota and throttling answer."""
    return GraphError(
        429,
        "TooManyRequests",
        "Please retry again later.",
        {"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


_SERVER_CODES = {500: "UnknownError", 502: "BadGateway", 503: "serviceNotAvailable", 504: "GatewayTimeout"}


def server_error(status: int) -> GraphError:
    """A transient 5xx in Graph's envelope; only 503 carries a message and Retry-After."""
    return GraphError(
        status,
        _SERVER_CODES[status],
        "The service is temporarily unavailable. Please retry later." if status == 503 else "",
        {"Retry-After": "1"} if status == 503 else {},
    )


def segment_not_found(segment: str) -> GraphError:
    """What Graph answers for a path (or a version) it does not serve."""
    return GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
