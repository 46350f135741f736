"""Render the fault matrix into docs/reliability.md: `python -m tests.faults.render [results.json]`.

With a results file (written by the fault tests, `FAULT_MATRIX_RESULTS=path pytest tests/faults`),
rows not observed in that run are flagged; without one, the table shows the asserted outcomes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults.matrix import ROWS

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BEGIN, END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"


def table(observed: dict[str, str] | None = None) -> str:
    lines: list[str] = []
    section = None
    for r in ROWS:
        if r.section != section:
            section = r.section
            lines += ["", f"### {section}", "", "| fault | where injected | agent behaviour | outcome |",
                      "|---|---|---|---|"]
        outcome = r.outcome
        if observed is not None and observed.get(r.key) != r.outcome:
            outcome += f" (**not observed: {observed.get(r.key, 'not run')}**)"
        lines.append(f"| {r.fault} | {r.where} | {r.behaviour} | {outcome} |")
    return "\n".join(lines).strip() + "\n"


def render(text: str, observed: dict[str, str] | None = None) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table(observed)}{END}{tail}"


def main(argv: list[str]) -> int:
    observed = json.loads(Path(argv[0]).read_text()) if argv else None
    DOC.write_text(render(DOC.read_text(), observed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
