"""The KQL subset's language, without evaluation: the tokens (strings, numbers, timespans,
`datetime(...)` literals), a cursor over them (`Parser`), `where` expressions, and `KqlError`, the
one error of the subset ("SyntaxError" or "SemanticError", as Log Analytics names them). Times
are integer 100 ns ticks, like KQL's datetime. The operators and their evaluation are `kql.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TICKS = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<datetime>datetime\(\s*(?P<dt>[^)]*?)\s*\))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<timespan>\d+(?:\.\d+)?(?:ms|d|h|m|s)\b)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<op>==|!=|>=|<=|!in\b|[|,()=<>])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
""", re.VERBOSE)
_SPAN_UNITS = {"ms": TICKS // 1000, "s": TICKS, "m": 60 * TICKS, "h": 3600 * TICKS, "d": 86400 * TICKS}
_DT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?Z?$")


class KqlError(Exception):
    """A query the subset cannot run; `kind` is "SyntaxError" or "SemanticError"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_datetime(text: str) -> int:
    m = _DT_RE.match(text.strip())
    if not m:
        raise KqlError("SyntaxError", f"invalid datetime literal {text!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC)
    return int((dt - _EPOCH).total_seconds()) * TICKS + int((frac or "0").ljust(7, "0")[:7])


@dataclass(frozen=True, slots=True)
class Tok:
    kind: str
    text: str
    value: Any = None


def tokenize(query: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(query):
        m = _TOKEN_RE.match(query, pos)
        if not m:
            raise KqlError("SyntaxError", f"unexpected character {query[pos]!r} at {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        text = m.group(0)
        if kind == "ws":
            continue
        if kind == "dt":
            kind = "datetime"
        if kind == "datetime":
            out.append(Tok("literal", text, ("datetime", parse_datetime(m.group("dt")))))
        elif kind == "string":
            out.append(Tok("literal", text, ("string", re.sub(r"\\(.)", r"\1", text[1:-1]))))
        elif kind == "timespan":
            num, unit = re.match(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)", text).groups()  # type: ignore[union-attr]
            out.append(Tok("literal", text, ("timespan", round(float(num) * _SPAN_UNITS[unit]))))
        elif kind == "number":
            out.append(Tok("literal", text, ("number", float(text) if "." in text else int(text))))
        else:
            out.append(Tok(kind, text))
    return out


class Parser:
    """The tokens of one query and a position: `peek`, `take` (or a SyntaxError naming what was
    expected), `accept`."""

    def __init__(self, query: str) -> None:
        self.toks = tokenize(query)
        self.i = 0

    def peek(self, offset: int = 0) -> Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self, kind: str | None = None, text: str | None = None) -> Tok:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind) or (text and tok.text.lower() != text):
            want = text or kind or "token"
            got = tok.text if tok else "end of query"
            raise KqlError("SyntaxError", f"expected {want}, found {got!r}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.text.lower() == text and tok.kind in ("op", "ident"):
            self.i += 1
            return True
        return False


# ---------------------------------------------------------------- expressions
Pred = tuple[str, Any, Any]  # ("and"|"or", left, right) or ("cmp", column, (op, literal or list))


def expression(p: Parser) -> Pred:
    """A `where` condition: `or` of `and`s of comparisons, parentheses group."""
    left = _and(p)
    while p.accept("or"):
        left = ("or", left, _and(p))
    return left


def _and(p: Parser) -> Pred:
    left = _atom(p)
    while p.accept("and"):
        left = ("and", left, _atom(p))
    return left


def _atom(p: Parser) -> Pred:
    if p.accept("("):
        e = expression(p)
        p.take("op", ")")
        return e
    col = p.take("ident").text
    tok = p.take()
    op = tok.text.lower()
    if op in ("in", "!in"):
        p.take("op", "(")
        values = [p.take("literal").value[1]]
        while p.accept(","):
            values.append(p.take("literal").value[1])
        p.take("op", ")")
        return ("cmp", col, (op, frozenset(values)))
    if op not in ("==", "!=", "<", "<=", ">", ">="):
        raise KqlError("SyntaxError", f"unsupported operator {tok.text!r} after {col}")
    return ("cmp", col, (op, p.take("literal").value[1]))
