"""Record bodies read as JSON, whatever RFC 8259 allows.

A scenario corpus may hold any valid JSON: a lone surrogate escape ("\\ud800"), integers past 64
bits, 1e400, nesting thousands deep (RFC 8259 §9 lets a parser limit depth, but Graph and the
Management API document none). The emulator serves `keep` corpus lines byte for byte and reads
them only for their id, event time and the SIEM copies' columns, so it must read what orjson
refuses; the stdlib parser stops at the interpreter's recursion limit, so deep documents go
through the small iterative reader below. NaN and Infinity are not JSON and are refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_WS = re.compile(r"[ \t\n\r]*")


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(text: str) -> int | float:
    # CPython refuses int() of more than 4300 digits; such a number is read only for the SIEM
    # copies' columns, where a float (as Log Analytics or Elasticsearch would store it) is faithful.
    return int(text) if len(text) <= 4000 else float(text)


_DECODER = json.JSONDecoder(parse_constant=_reject, parse_int=_int)


def loads(data: bytes) -> Any:
    """Parse one JSON text; raises ValueError (with a position) for anything that is not JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data.decode("utf-8")  # JSON between systems is UTF-8 (RFC 8259 §8.1); else ValueError
    try:
        return _DECODER.decode(text)
    except RecursionError:
        return _deep(text)


def _skip(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _deep(text: str) -> Any:
    """Containers on a list instead of the call stack; scalars through the stdlib's own decoder."""
    stack: list[tuple[Any, str | None]] = []
    i = _skip(text, 0)
    while True:
        ch = text[i:i + 1]
        opens = ch in ("{", "[")
        j = _skip(text, i + 1)
        if opens and text[j:j + 1] != ("}" if ch == "{" else "]"):
            container: Any = {} if ch == "{" else []
            key = None
            if ch == "{":
                key, j = _key(text, j)
            stack.append((container, key))
            i = j
            continue
        if opens:  # an empty container
            value: Any = {} if ch == "{" else []
            i = j + 1
        else:
            value, i = _DECODER.raw_decode(text, i)  # a scalar: no recursion
            if isinstance(value, dict | list):
                raise ValueError(f"expected a scalar at {i}")
        while True:
            i = _skip(text, i)
            if not stack:
                if i != len(text):
                    raise ValueError(f"extra data at {i}")
                return value
            container, key = stack[-1]
            if isinstance(container, dict):
                container[key] = value
            else:
                container.append(value)
            ch = text[i:i + 1]
            if ch == ",":
                i = _skip(text, i + 1)
                if isinstance(container, dict):
                    key, i = _key(text, i)
                    stack[-1] = (container, key)
                break
            if ch != ("}" if isinstance(container, dict) else "]"):
                raise ValueError(f"expected ',' or a closing bracket at {i}")
            stack.pop()
            value, i = container, i + 1


def _key(text: str, i: int) -> tuple[str, int]:
    if text[i:i + 1] != '"':
        raise ValueError(f"expected a string key at {i}")
    key, j = _DECODER.raw_decode(text, i)
    j = _skip(text, j)
    if text[j:j + 1] != ":":
        raise ValueError(f"expected ':' at {j}")
    return str(key), _skip(text, j + 1)
