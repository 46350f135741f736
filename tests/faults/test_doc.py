"""docs/reliability.md shows exactly the matrix, and every row has a test that reports its outcome."""

from __future__ import annotations

import re
from pathlib import Path

from tests.faults.matrix import BY_KEY, ROWS
from tests.faults.render import DOC, render

HERE = Path(__file__).parent


def test_the_document_is_the_rendered_matrix() -> None:
    text = DOC.read_text()
    assert text == render(text), "docs/reliability.md is stale: run `python -m tests.faults.render`"


def test_every_row_is_reported_by_a_test() -> None:
    """Each test reports `outcome("<key>", ...)` with a literal key, an f-string over a parameter, or
    `outcome(key, ...)` with the keys quoted in its parameter list; every row must be reachable."""
    sources = "".join(p.read_text() for p in HERE.glob("test_*.py") if p.name != "test_doc.py")
    literal = set(re.findall(r'outcome\("([^"{]+)"', sources))
    if "outcome(key, " in sources:  # parametrized keys: quoted literally in the parameter list
        literal |= {k for k in BY_KEY if f'"{k}"' in sources}
    patterns = [re.escape(p).replace(r"\{", "{").replace(r"\}", "}")
                for p in re.findall(r'outcome\(f"([^"]+)"', sources)]
    regexes = [re.compile("^" + re.sub(r"\{[^}]+\}", "[^ ]+", p) + "$") for p in patterns]
    unreported = [r.key for r in ROWS if r.key not in literal and not any(x.match(r.key) for x in regexes)]
    assert not unreported, f"rows without a test: {unreported}"
    assert set(BY_KEY) == {r.key for r in ROWS}
