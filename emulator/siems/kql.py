"""A small, honest KQL subset: enough for a reconciler, and a documented error for everything else.

Supported: `T`, `union [isfuzzy=true] T1, T2`; `| where` with `and`/`or`, parentheses, `== != < <=
> >=` against string, number and `datetime(...)` literals, `in (...)` and `!in (...)`;
`| project a, b = c`; `| summarize [n =] count(), [d =] count_distinct(c) [by [b =] bin(T, 1h), c]`;
`| distinct a`; `| count`; `| take N` / `| limit N`; `| extend X = c` and `| extend X = coalesce(c1, c2,
...)` (the first non-null value, as KQL's coalesce()). Anything else raises KqlError, which the
endpoint turns into 400 BadArgumentError with a SyntaxError or SemanticError inner error, as
Log Analytics does. Times are integer 100 ns ticks, like KQL's datetime.

This module evaluates: the tables (`Table`), the frames between operators, each operator. The
language (tokens, `Parser`, `where` expressions, `KqlError`) is `kql_syntax.py`.
"""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.siems.kql_syntax import KqlError, Parser, Pred, expression, tokenize

# The subset's public face: callers (the Log Analytics endpoint, tests) reach the language through here.
__all__ = ["Frame", "KqlError", "Parser", "Table", "run", "tokenize"]


class Table(Protocol):
    """A workspace table as the evaluator sees it: time-sorted rows, columns fetched by name."""

    name: str

    def times(self) -> Sequence[int]: ...
    def column(self, name: str) -> Sequence[Any] | None: ...
    def schema(self) -> list[tuple[str, str]]: ...


@dataclass
class Frame:
    """Rows of source tables (index lists) or, after project/summarize, a materialized result."""

    parts: list[tuple[Table, list[int]]] | None
    columns: list[tuple[str, str]]
    rows: list[list[Any]]


Resolve = Callable[[str], Table | None]


def run(query: str, resolve: Resolve, start: int | None, end: int | None, visible: int) -> Frame:
    """Evaluate `query`; `start`/`end` is the request's timespan on TimeGenerated (ticks)."""
    p = Parser(query)
    frame = _source(p, resolve, start, end, visible)
    while p.peek() is not None:
        p.take("op", "|")
        frame = _operator(p, frame)
    return _materialize(frame, None) if frame.parts is not None else frame


def _source(p: Parser, resolve: Resolve, start: int | None, end: int | None, visible: int) -> Frame:
    names: list[str] = []
    fuzzy = False
    if p.accept("union"):
        if p.accept("isfuzzy"):
            p.take("op", "=")
            fuzzy = p.take("ident").text.lower() == "true"
        names.append(p.take("ident").text)
        while p.accept(","):
            names.append(p.take("ident").text)
    else:
        names.append(p.take("ident").text)
    parts = []
    for name in names:
        table = resolve(name)
        if table is None:
            if fuzzy:
                continue
            raise KqlError("SemanticError", f"'{name}' could not be resolved to a table")
        parts.append((table, _time_slice(table, start, end, visible)))
    if not parts:
        raise KqlError("SemanticError", "none of the union's tables could be resolved")
    return Frame(parts, [], [])


def _time_slice(table: Table, start: int | None, end: int | None, visible: int) -> list[int]:
    times = table.times()
    lo = 0 if start is None else bisect_left(times, start)
    hi = len(times) if end is None else bisect_left(times, end)
    ingested = table.column("_ingested")
    if ingested is None:
        return list(range(lo, hi))
    return [i for i in range(lo, hi) if ingested[i] <= visible]


def _operator(p: Parser, frame: Frame) -> Frame:
    op = p.take("ident").text.lower()
    if op == "where":
        return _where(frame, expression(p))
    if op == "project":
        return _project(p, frame)
    if op == "summarize":
        return _summarize(p, frame)
    if op == "extend":
        return _extend(p, frame)
    if op == "distinct":
        cols = [p.take("ident").text]
        while p.accept(","):
            cols.append(p.take("ident").text)
        m = _materialize(frame, cols)
        seen = list(dict.fromkeys(tuple(r) for r in m.rows))
        return Frame(None, m.columns, [list(r) for r in seen])
    if op == "count":
        n = sum(len(ix) for _, ix in frame.parts) if frame.parts is not None else len(frame.rows)
        return Frame(None, [("Count", "long")], [[n]])
    if op in ("take", "limit"):
        lit = p.take("literal").value
        m = _materialize(frame, None) if frame.parts is not None else frame
        return Frame(None, m.columns, m.rows[: int(lit[1])])
    raise KqlError("SyntaxError", f"operator {op!r} is not supported by this emulator")


_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b, ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b, "in": lambda a, b: a in b, "!in": lambda a, b: a not in b,
}


def _column_or_nulls(table: Any, column: str) -> Any:
    """A table's column, or nulls in every row when a fuzzy-unioned table lacks it."""
    return table.column(column) or _Nulls()


def _compile(pred: Pred, get: Callable[[str], Sequence[Any]]) -> Callable[[int], bool]:
    kind = pred[0]
    if kind in ("and", "or"):
        left, right = _compile(pred[1], get), _compile(pred[2], get)
        if kind == "and":
            return lambda i: left(i) and right(i)
        return lambda i: left(i) or right(i)
    values = get(pred[1])
    op, lit = pred[2]
    fn = _CMP[op]
    return lambda i: fn(values[i], lit)


def _where(frame: Frame, pred: Pred) -> Frame:
    if frame.parts is None:
        index = {name: n for n, (name, _) in enumerate(frame.columns)}

        def getr(col: str) -> Sequence[Any]:
            if col not in index:
                raise KqlError("SemanticError", f"Failed to resolve scalar expression named '{col}'")
            return [r[index[col]] for r in frame.rows]

        test = _compile(pred, getr)
        return Frame(None, frame.columns, [r for n, r in enumerate(frame.rows) if test(n)])
    _check_columns(frame, _columns_of(pred))
    parts = []
    for table, ix in frame.parts:
        test = _compile(pred, functools.partial(_column_or_nulls, table))
        parts.append((table, [i for i in ix if test(i)]))
    return Frame(parts, [], [])


class _Nulls:
    """A column a fuzzy-unioned table lacks: null in every row, as KQL's union does."""

    def __getitem__(self, i: int) -> None:
        return None

    def __len__(self) -> int:
        return 0


def _columns_of(pred: Pred) -> set[str]:
    if pred[0] == "cmp":
        return {pred[1]}
    return _columns_of(pred[1]) | _columns_of(pred[2])


def _check_columns(frame: Frame, cols: set[str] | list[str]) -> None:
    assert frame.parts is not None
    for col in cols:
        if not any(t.column(col) is not None for t, _ in frame.parts):
            raise KqlError("SemanticError", f"Failed to resolve scalar expression named '{col}'")


# ---------------------------------------------------------------- extend
class _Extended:
    """A table seen with one computed column more (what `extend` adds, row by row)."""

    def __init__(self, table: Table, name: str, sources: list[str]) -> None:
        self.name = table.name
        self.table = table
        self.column_name = name
        self.sources = sources
        self._values: list[Any] | None = None

    def times(self) -> Sequence[int]:
        return self.table.times()

    def schema(self) -> list[tuple[str, str]]:
        types = dict(self.table.schema())
        kind = next((types[c] for c in self.sources if c in types), "string")
        return [*[(c, t) for c, t in self.table.schema() if c != self.column_name], (self.column_name, kind)]

    def column(self, name: str) -> Sequence[Any] | None:
        if name != self.column_name:
            return self.table.column(name)
        if self._values is None:
            cols = [_column_or_nulls(self.table, c) for c in self.sources]
            self._values = [next((c[i] for c in cols if c[i] is not None), None)
                            for i in range(len(self.table.times()))]
        return self._values


def _extend(p: Parser, frame: Frame) -> Frame:
    name = p.take("ident").text
    p.take("op", "=")
    if p.accept("coalesce"):
        p.take("op", "(")
        sources = [p.take("ident").text]
        while p.accept(","):
            sources.append(p.take("ident").text)
        p.take("op", ")")
    else:
        sources = [p.take("ident").text]
    if frame.parts is None:
        index = {c: n for n, (c, _) in enumerate(frame.columns)}
        for c in sources:
            if c not in index:
                raise KqlError("SemanticError", f"Failed to resolve scalar expression named '{c}'")
        kind = frame.columns[index[sources[0]]][1]
        rows = [[*r, next((r[index[c]] for c in sources if r[index[c]] is not None), None)] for r in frame.rows]
        return Frame(None, [*frame.columns, (name, kind)], rows)
    _check_columns(frame, sources)
    return Frame([(_Extended(t, name, sources), ix) for t, ix in frame.parts], [], [])


# ---------------------------------------------------------------- project / summarize
def _project(p: Parser, frame: Frame) -> Frame:
    out: list[tuple[str, str]] = []
    while True:
        name = p.take("ident").text
        src = p.take("ident").text if p.accept("=") else name
        out.append((name, src))
        if not p.accept(","):
            break
    m = _materialize(frame, [s for _, s in out])
    return Frame(None, [(n, t) for (n, _), (_, t) in zip(out, m.columns, strict=True)], m.rows)


def _materialize(frame: Frame, cols: list[str] | None) -> Frame:
    if frame.parts is None:
        if cols is None:
            return frame
        index = {name: n for n, (name, _) in enumerate(frame.columns)}
        for c in cols:
            if c not in index:
                raise KqlError("SemanticError", f"Failed to resolve scalar expression named '{c}'")
        return Frame(None, [frame.columns[index[c]] for c in cols], [[r[index[c]] for c in cols] for r in frame.rows])
    if cols is None:
        cols = list(dict.fromkeys(name for t, _ in frame.parts for name, _ in t.schema()))
    _check_columns(frame, cols)
    types = {}
    for t, _ in frame.parts:
        types.update(dict(t.schema()))
    rows: list[list[Any]] = []
    for table, ix in frame.parts:
        arrays = [table.column(c) or _Nulls() for c in cols]
        rows.extend([a[i] for a in arrays] for i in ix)
    return Frame(None, [(c, types.get(c, "string")) for c in cols], rows)


def _summarize(p: Parser, frame: Frame) -> Frame:
    aggs: list[tuple[str, str, str | None]] = []  # (output name, function, column)
    while True:
        name = None
        if p.peek(1) is not None and p.peek(1).text == "=":  # type: ignore[union-attr]
            name = p.take("ident").text
            p.take("op", "=")
        fn = p.take("ident").text.lower()
        p.take("op", "(")
        col = None if fn == "count" else p.take("ident").text
        p.take("op", ")")
        if fn not in ("count", "count_distinct", "dcount"):
            raise KqlError("SyntaxError", f"aggregation {fn!r} is not supported by this emulator")
        aggs.append((name or (f"{fn}_" if fn == "count" else f"{fn}_{col}"), fn, col))
        if not p.accept(","):
            break
    keys: list[tuple[str, str, int | None]] = []  # (output name, column, bin size)
    if p.accept("by"):
        while True:
            name = None
            if p.peek(1) is not None and p.peek(1).text == "=":  # type: ignore[union-attr]
                name = p.take("ident").text
                p.take("op", "=")
            if p.accept("bin"):
                p.take("op", "(")
                col = p.take("ident").text
                p.take("op", ",")
                size = p.take("literal").value
                p.take("op", ")")
                if size[0] != "timespan" or size[1] <= 0:
                    raise KqlError("SemanticError", "bin() needs a positive timespan")
                keys.append((name or col, col, size[1]))
            else:
                col = p.take("ident").text
                keys.append((name or col, col, None))
            if not p.accept(","):
                break
    return _group(frame, aggs, keys)


def _group(frame: Frame, aggs: list[tuple[str, str, str | None]], keys: list[tuple[str, str, int | None]]) -> Frame:
    needed = list(dict.fromkeys([c for _, c, _ in keys] + [c for _, _, c in aggs if c]))
    m = _materialize(frame, needed)
    pos = {c: n for n, c in enumerate(needed)}
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for r in m.rows:
        key = tuple(r[pos[c]] - r[pos[c]] % size if size else r[pos[c]] for _, c, size in keys)
        state = groups.get(key)
        if state is None:
            state = groups[key] = [0 if fn == "count" else set() for _, fn, _ in aggs]
        for n, (_, fn, col) in enumerate(aggs):
            if fn == "count":
                state[n] += 1
            else:
                state[n].add(r[pos[col]])  # type: ignore[index]
    types = dict(m.columns)
    columns = [(name, "datetime" if size else types.get(c, "string")) for name, c, size in keys]
    columns += [(name, "long") for name, _, _ in aggs]
    rows = [list(k) + [v if isinstance(v, int) else len(v) for v in state]
            for k, state in sorted(groups.items(), key=_sort_key)]
    if not keys and not rows:
        rows = [[0 for _ in aggs]]
    return Frame(None, columns, rows)


def _sort_key(item: tuple[tuple[Any, ...], list[Any]]) -> tuple[Any, ...]:
    return tuple((v is None, str(type(v)), v if v is not None else 0) for v in item[0])
