"""The `$filter` subset Microsoft documents for the audit log lists, parsed into bounds.

Accepted: `<time field> ge|le|gt|lt|eq <unquoted ISO timestamp>`, `id eq '<id>'`, and (sign-ins)
`signInEventTypes/any(t: t eq '<type>' [or t eq '<type>'...])` or `ne`, joined with `and`, with
optional parentheses. Anything else raises FilterError, which Graph answers with 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from emulator.world.clock import parse_iso

EVENT_TYPE_VALUES = (
    "interactiveUser",
    "nonInteractiveUser",
    "servicePrincipal",
    "managedIdentity",
    "unknownFutureValue",
)
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')"
    r"|(?P<time>\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)"
    r"|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<punc>[():])"
    r"|(?P<word>[A-Za-z_$][\w/]*))"
)
_OPS = ("eq", "ne", "ge", "le", "gt", "lt")


class FilterError(ValueError):
    """The filter is outside the supported grammar; the message is Graph's 400 text."""


@dataclass
class Filter:
    lo: int | None = None  # inclusive lower bound on the time field, in ticks
    hi: int | None = None  # inclusive upper bound
    event_types: set[str] | None = None  # None: the endpoint's default
    ids: set[str] | None = None
    _seen: list[str] = field(default_factory=list)

    def bound(self, op: str, ticks: int) -> None:
        if op in ("ge", "gt", "eq"):
            lo = ticks + (1 if op == "gt" else 0)
            self.lo = lo if self.lo is None else max(self.lo, lo)
        if op in ("le", "lt", "eq"):
            hi = ticks - (1 if op == "lt" else 0)
            self.hi = hi if self.hi is None else min(self.hi, hi)
        if op == "ne":
            raise FilterError("Invalid filter clause: 'ne' is not supported on date-time properties.")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, time_field: str, event_types: bool, time_ops: frozenset[str] | None) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.time_field = time_field.lower()
        self.allow_types = event_types
        self.time_ops = time_ops
        self.result = Filter()

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        k, v = self.peek()
        if k != kind or (value is not None and v.lower() != value):
            raise FilterError(f"Invalid filter clause: expected {value or kind} but found '{v or 'end'}'.")
        self.i += 1
        return v

    def expr(self) -> None:
        self.term()
        while self.peek()[0] == "word" and self.peek()[1].lower() in ("and", "or"):
            if self.take("word").lower() == "or":
                raise FilterError("Invalid filter clause: 'or' between these clauses is not supported.")
            self.term()

    def term(self) -> None:
        kind, value = self.peek()
        if kind == "punc" and value == "(":
            self.take("punc", "(")
            self.expr()
            self.take("punc", ")")
        elif kind == "word" and value.lower() == "signineventtypes/any":
            self.any_clause()
        elif kind == "word":
            self.comparison()
        else:
            raise FilterError(f"Invalid filter clause: unexpected '{value}'.")

    def any_clause(self) -> None:
        if not self.allow_types:
            raise FilterError(
                "Could not find a property named 'signInEventTypes' on type 'microsoft.graph.signIn'."
            )
        self.take("word")
        self.take("punc", "(")
        var = self.take("word")
        self.take("punc", ":")
        chosen: set[str] = set()
        joiner = ""
        while True:
            if self.take("word") != var:
                raise FilterError(f"Invalid filter clause: expected the range variable '{var}'.")
            op = self.take("word").lower()
            literal = self.take("str")[1:-1].replace("''", "'")
            if literal not in EVENT_TYPE_VALUES:
                raise FilterError(f"Invalid filter clause: '{literal}' is not a signInEventType.")
            if op == "eq":
                chosen.add(literal)
            elif op == "ne":
                chosen |= set(EVENT_TYPE_VALUES) - {literal}
            else:
                raise FilterError(
                    f"Invalid filter clause: operator '{op}' is not supported on signInEventTypes."
                )
            k, v = self.peek()
            if k == "word" and v.lower() in ("or", "and"):
                if joiner and joiner != v.lower():
                    raise FilterError("Invalid filter clause: mixed 'and'/'or' inside any().")
                joiner = self.take("word").lower()
                continue
            break
        self.take("punc", ")")
        prev = self.result.event_types
        self.result.event_types = chosen if prev is None else prev & chosen

    def comparison(self) -> None:
        name = self.take("word")
        op = self.take("word").lower()
        if op not in _OPS:
            raise FilterError(f"Invalid filter clause: '{op}' is not a supported operator.")
        kind, value = self.peek()
        self.i += 1
        if name.lower() == self.time_field:
            if self.time_ops is not None and op not in self.time_ops:
                raise FilterError(
                    f"Invalid filter clause: operator '{op}' is not supported on {name}; "
                    f"supported: {', '.join(sorted(self.time_ops))}."
                )
            if kind != "time":
                raise FilterError(
                    f"Invalid filter clause: {name} needs an unquoted ISO-8601 timestamp, not {value}."
                )
            try:
                ticks = parse_iso(value, need_zone=True)
            except ValueError:
                raise FilterError(
                    f"Invalid filter clause: '{value}' is not a valid DateTimeOffset."
                ) from None
            self.result.bound(op, ticks)
        elif name.lower() == "id" and op == "eq" and kind == "str":
            ids = {value[1:-1].replace("''", "'")}
            self.result.ids = ids if self.result.ids is None else self.result.ids & ids
        else:
            raise FilterError(
                f"Invalid filter clause: filtering on '{name}' with '{op}' is not supported by this emulator."
            )


def parse(text: str, time_field: str, event_types: bool, time_ops: frozenset[str] | None = None) -> Filter:
    """Parse a `$filter` value (already URL-decoded); `time_ops`: the comparison operators the
    resource documents on its time field (None: any of eq/ge/le/gt/lt)."""
    p = _Parser(text, time_field, event_types, time_ops)
    if not p.toks:
        raise FilterError("Invalid filter clause: the filter is empty.")
    p.expr()
    if p.i != len(p.toks):
        raise FilterError(f"Invalid filter clause: unexpected '{p.peek()[1]}'.")
    return p.result
