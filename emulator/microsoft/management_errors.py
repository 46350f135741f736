"""The Management Activity API's error answers: `{"error":{"code":"AFxxxxx","message":...}}` with
its HTTP status (protocols.md §2), and the 401 an unaccepted token gets.
"""

from __future__ import annotations

import orjson
from aiohttp import web

JSON = "application/json"


class AfError(Exception):
    """A refusal in the API's terms: HTTP status, AF code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(err: AfError) -> web.Response:
    """`{"error": {"code": "AFxxxxx", "message": ...}}` with the error's status."""
    return web.Response(
        status=err.status,
        content_type=JSON,
        body=orjson.dumps({"error": {"code": err.code, "message": err.message}}),
    )


def unauthorized() -> web.Response:
    """A missing, bad or expired token: 401 with the ASP.NET message, not an AF code."""
    return web.Response(
        status=401,
        content_type=JSON,
        headers={"WWW-Authenticate": "Bearer"},
        body=orjson.dumps({"Message": "Authorization has been denied for this request."}),
    )
