"""Hypothesis strategies shared by the fuzz tests: hostile JSON, bodies, headers and times."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import strategies as st

SECRET = "fuzz-secret-token-7f3a9c"  # registered with agent.logs.register_secret by every fuzz module

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                    st.just(SECRET), st.sampled_from(["2026-03-10T10:00:00Z", "2015-06-29T20:03:19",
                                                      "2026-03-10T10:00:00.1234567Z", "9999-12-31T23:59:59-01:00",
                                                      "0001-01-01T00:00:00+01:00", "", "Z", "nonsense"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=6)), max_leaves=25)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(dumps),
    st.sampled_from([b"", b"<!DOCTYPE html><html><body>503 " + SECRET.encode() + b"</body></html>", b"[", b"{",
                     b'{"error": {"code": "AF429", "message": "token ' + SECRET.encode() + b'"}}',
                     b'{"error": "' + SECRET.encode() + b'"}', b"null", b"\xff\xfe"]),
)
statuses = st.one_of(st.sampled_from([200, 201, 204, 400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503, 504]),
                     st.integers(min_value=100, max_value=599))
header_values = st.one_of(st.text(max_size=40), st.just(SECRET), st.sampled_from(
    ["0", "2.128", "-5", "1e308", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
     "https://127.0.0.1:1/next?x=1", "", " "]))
headers = st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "Date", "NextPageUri", "NextPageUrl",
                                           "nextpageuri", "Content-Type", "Authorization", "X-Other"]),
                          header_values, max_size=4)
