"""Every JSON text RFC 8259 allows, parsed and written back without reshaping it.

orjson is the fast path, but it refuses some valid JSON (a lone surrogate escape such as
"\\ud800", a number too large for a double such as 1e400, nesting deeper than 1024) and silently
turns integers beyond 64 bits into floats; its writer also stops at 255 levels. A record the API
sent is stored parsed-equal (contract 2), so whatever the fast path cannot hold goes through the
exact path here: integers stay integers, numbers a double cannot hold stay `Decimal`, strings keep
their lone surrogates (written back as `\\u` escapes), and nesting depth is limited only by memory.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

_INT64_LIMIT = 2**63
_DIGITS_ONLY = bytes(b if 0x30 <= b <= 0x39 else 0x20 for b in range(256)).replace(
    b"0123456789", b"0000000000")  # every digit -> "0", everything else -> " "
_WIDE_RUN = b"0" * 19  # 19 digits: the shortest integer that can reach 2**63
_BEFORE_NUMBER = frozenset(b"[,: \t\r\n")  # what a JSON value follows (RFC 8259 §2, §4, §5)
_AFTER_NUMBER = frozenset(b"]},: \t\r\n")  # what ends an integer token; `.`, `e`, `E` make it a float
_INT_DIGITS = 4000  # below CPython's int/str conversion limit (4300); longer integers stay Decimal
_INT_LIMIT = 10**_INT_DIGITS
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_NUMBER_PREFIX = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]*)?)?")  # what a cut number leaves
_LITERALS = {"true": True, "false": False, "null": None}
# The stdlib's own string scanner (C): escapes and lone surrogates exactly as json.loads reads them.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


class JsonError(ValueError):
    """Not JSON. `incomplete` says the text ended early (a cut body: worth retrying) rather than
    being invalid where it stands (the same bytes will fail the same way)."""

    def __init__(self, message: str, position: int, *, incomplete: bool) -> None:
        super().__init__(f"{message} at character {position}")
        self.position = position
        self.incomplete = incomplete


def loads(data: bytes | str) -> Any:
    """Parse one JSON text; raises JsonError for anything that is not JSON."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _loads_exact(data)
    if _has_wide_integer(raw):
        return _loads_exact(data)
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of a parsed value (the same text orjson writes whenever it can)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _dumps_exact(value)


def _has_wide_integer(raw: bytes) -> bool:
    """Pre-check on the fast path: an integer token of 19+ digits that could be >= 2**63.

    Measured on a 2 MB page: a regex over the page costs ~10x orjson's parse, `translate` plus a
    substring search ~1 ms. So the digit runs are found in the translated copy, and only a run that
    stands where a JSON integer can stand (after `[`, `,`, `:`, whitespace or the start, with an
    optional sign; before `]`, `}`, `,`, whitespace or the end) is read: a run inside a string such as
    an all-digit token identifier is not a number, and used to send a whole page to the slow path.
    A string that happens to hold such a pattern still does: that costs time, never exactness.
    """
    digits = raw.translate(_DIGITS_ONLY)
    at = digits.find(_WIDE_RUN)
    while at != -1:  # `at` starts a run: the search resumes past the previous run's end
        end = digits.find(b" ", at)
        end = len(digits) if end == -1 else end
        before = at - 1 if at and raw[at - 1] == 0x2D else at  # 0x2D: a minus sign
        if (before == 0 or raw[before - 1] in _BEFORE_NUMBER) and (end == len(raw) or raw[end] in _AFTER_NUMBER) \
                and (end - at > 19 or int(raw[at:end]) >= _INT64_LIMIT):
            return True
        at = digits.find(_WIDE_RUN, end)
    return False


# ------------------------------------------------------------------------------------ salvage

# A whole string, a quote that opens a string never closed, or one structural byte.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|"|[\[\]{},:]', re.S)


def split_members(data: bytes) -> list[bytes] | None:
    """The raw members of the array or object `data` holds (objects: `"key": value` slices), split at
    its top-level commas without validating them, or None when its strings and brackets do not
    balance. Works on bytes: UTF-8 never puts an ASCII byte inside a multi-byte character, so
    invalid text inside one member cannot move a boundary."""
    text = data.strip(b" \t\r\n")
    if text[:1] not in (b"[", b"{"):
        return None
    depth, start, out = 0, 1, list[bytes]()
    for m in _STRUCTURE.finditer(text):
        ch = m.group()
        if ch == b'"':
            return None  # a string that never ends: no boundary after it can be trusted
        if ch in (b"[", b"{"):
            depth += 1
        elif ch in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                if m.end() != len(text):
                    return None
                last = text[start:m.start()]
                return [*out, last] if out or last.strip() else out
        elif ch == b"," and depth == 1:
            out.append(text[start:m.start()])
            start = m.end()
    return None


def split_key(member: bytes) -> tuple[str, bytes] | None:
    """(key, raw value) of one `"key": value` object member, or None if its key is not readable."""
    m = _STRUCTURE.match(member.lstrip(b" \t\r\n"))
    if m is None or not m.group().startswith(b'"'):
        return None
    rest = member.lstrip(b" \t\r\n")[m.end():].lstrip(b" \t\r\n")
    if not rest.startswith(b":"):
        return None
    try:
        key = loads(m.group())
    except JsonError:
        return None
    return (key, rest[1:]) if isinstance(key, str) else None


# ------------------------------------------------------------------------------------ exact parse

def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # RFC 8259 §8.1: JSON exchanged between systems is UTF-8
        raise JsonError(f"invalid UTF-8 ({exc.reason})", exc.start,
                        incomplete=exc.reason == "unexpected end of data") from None


def _loads_exact(data: bytes | str) -> Any:
    text = _text(data)
    try:  # the C scanner is exact with these hooks; only its recursion depth is limited
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_reject)
    except RecursionError:
        return _Parser(text).document()
    except ValueError:  # JSONDecodeError, or NaN/Infinity refused by `_reject`
        return _Parser(text).document()  # raises with the position and whether the text was cut


def _int(text: str) -> int | Decimal:
    return int(text) if len(text) <= _INT_DIGITS else Decimal(text)


def _float(text: str) -> float | Decimal:
    f = float(text)
    return f if math.isfinite(f) else Decimal(text)


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Parser:
    """An iterative JSON parser: containers live on a list, not the call stack, so depth is free."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.end = len(text)

    def fail(self, message: str, i: int) -> JsonError:
        return JsonError(message, i, incomplete=i >= self.end)

    def skip(self, i: int) -> int:
        m = _WS.match(self.text, i)
        return m.end() if m else i

    def document(self) -> Any:
        value, i = self.value(self.skip(0))
        i = self.skip(i)
        if i != self.end:
            raise self.fail("extra data after the JSON value", i)
        return value

    def value(self, i: int) -> tuple[Any, int]:
        stack: list[tuple[list[Any] | dict[str, Any], str | None]] = []
        while True:
            value, i, opened = self.scalar_or_open(i)
            if opened is not None:  # a container with a first member to come
                stack.append(opened)
                continue
            while True:  # attach the finished value, closing every container it completes
                if not stack:
                    return value, i
                container, key = stack[-1]
                if isinstance(container, list):
                    container.append(value)
                else:
                    container[str(key)] = value
                i = self.skip(i)
                ch = self.text[i:i + 1]
                if ch == ",":
                    i = self.skip(i + 1)
                    if isinstance(container, dict):
                        key, i = self.key(i)
                        stack[-1] = (container, key)
                    break
                if ch == ("]" if isinstance(container, list) else "}"):
                    stack.pop()
                    value, i = container, i + 1
                    continue
                raise self.fail("expected ',' or a closing bracket", i)

    def scalar_or_open(self, i: int) -> tuple[Any, int, tuple[list[Any] | dict[str, Any], str | None] | None]:
        """A value (empty containers included), or a newly opened container and its first key."""
        ch = self.text[i:i + 1]
        if ch == "{":
            j = self.skip(i + 1)
            if self.text[j:j + 1] == "}":
                return {}, j + 1, None
            key, j = self.key(j)
            return None, j, ({}, key)
        if ch == "[":
            j = self.skip(i + 1)
            if self.text[j:j + 1] == "]":
                return [], j + 1, None
            return None, j, ([], None)
        if ch == '"':
            s, j = self.string(i)
            return s, j, None
        m = _NUMBER.match(self.text, i)
        cut = _NUMBER_PREFIX.match(self.text, i)
        if cut and cut.end() == self.end and cut.end() > (m.end() if m else i):
            raise self.fail("number cut short by the end of the text", self.end)
        if m:
            literal = m.group()
            return (_int(literal) if not (m.group(2) or m.group(3)) else _float(literal)), m.end(), None
        for word, val in _LITERALS.items():
            if self.text.startswith(word, i):
                return val, i + len(word), None
            if word.startswith(self.text[i:]) and i < self.end:
                raise self.fail(f"unfinished {word!r}", self.end)
        raise self.fail("expected a JSON value", i)

    def key(self, i: int) -> tuple[str, int]:
        if self.text[i:i + 1] != '"':
            raise self.fail("expected a string key", i)
        key, j = self.string(i)
        j = self.skip(j)
        if self.text[j:j + 1] != ":":
            raise self.fail("expected ':' after a key", j)
        return key, self.skip(j + 1)

    def string(self, i: int) -> tuple[str, int]:
        try:
            return _scanstring(self.text, i + 1, True)
        except json.JSONDecodeError as exc:
            # an escape or the closing quote cut off by the end of the text is a cut body
            cut = "Unterminated" in exc.msg or (exc.msg.startswith("Invalid \\u") and exc.pos + 6 > self.end) \
                or (exc.msg.startswith("Invalid \\escape") and exc.pos + 2 > self.end)
            raise JsonError(exc.msg, exc.pos, incomplete=cut) from None


# ------------------------------------------------------------------------------------ exact write

def _dumps_exact(value: Any) -> bytes:
    """Iterative writer: the same compact form as orjson, `\\u` escapes where UTF-8 cannot go."""
    out: list[bytes] = []
    work: list[Any] = [value]
    while work:
        item = work.pop()
        if isinstance(item, bytes):  # punctuation queued below; parsed JSON never holds bytes
            out.append(item)
        elif isinstance(item, dict):
            parts: list[Any] = [b"{"]
            for n, (k, v) in enumerate(item.items()):
                if not isinstance(k, str):
                    raise TypeError(f"JSON object keys must be strings, not {type(k).__name__}")
                parts += [b"," if n else b"", _string(k) + b":", v]
            parts.append(b"}")
            work.extend(reversed(parts))
        elif isinstance(item, list | tuple):
            parts = [b"["]
            for n, v in enumerate(item):
                parts += [b"," if n else b"", v]
            parts.append(b"]")
            work.extend(reversed(parts))
        else:
            out.append(_scalar(item))
    return b"".join(out)


def _scalar(value: Any) -> bytes:
    if isinstance(value, str):
        return _string(value)
    if value is None or isinstance(value, bool):
        return b"null" if value is None else (b"true" if value else b"false")
    if isinstance(value, int):
        return str(value).encode() if abs(value) < _INT_LIMIT else str(Decimal(value)).encode()
    if isinstance(value, float) and math.isfinite(value):
        return orjson.dumps(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value).encode()
    raise TypeError(f"{type(value).__name__} {value!r:.40} is not a JSON value")


def _string(s: str) -> bytes:
    try:
        return orjson.dumps(s)
    except orjson.JSONEncodeError:  # a lone surrogate: only a \\u escape can carry it
        return json.dumps(s).encode("ascii")
