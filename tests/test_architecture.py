"""Architecture rules turned into tests: `agent/` has no import cycle, and the composition root
(`agent/app.py`) is the only place that wires the shared parts: no command of `agent/cli/` opens its
own HTTP client, store, archive, SIEM, backfill writer or token provider.

Every import statement counts (module level, inside functions, under `if TYPE_CHECKING:`): a cycle
hidden behind a function import is still two modules that cannot be understood, tested or moved
apart. The graph is built from the AST, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package), for every .py file under the package `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that one import statement in module `name` names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if node.level:  # relative: resolved against the importing module's package
        base = name.split(".") if package else name.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in known:  # `from pkg import mod`: an edge to the module
            out.add(sub)
        elif source in known:  # `from mod import name`
            out.add(source)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, from every Import/ImportFrom node."""
    mods = modules(root)
    known = set(mods)
    graph: dict[str, set[str]] = {}
    for name, (path, package) in mods.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _targets(node, name, package, known)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None when the graph is acyclic (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for start in sorted(graph):
            if start not in state and (cycle := visit(start)) is not None:
                return cycle
    finally:
        sys.setrecursionlimit(limit)
    return None


def assert_acyclic(root: Path) -> None:
    cycle = find_cycle(import_graph(root))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_agent_has_no_import_cycle() -> None:
    graph = import_graph(AGENT)
    assert len(graph) > 50 and graph["agent.service.supervisor"], "the graph was built from the real tree"
    assert_acyclic(AGENT)


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / next(iter(files)).split("/")[0]


@pytest.mark.parametrize(("files", "cycle"), [
    # hidden behind TYPE_CHECKING and a function import, as service <-> reconcile schedule was
    ({"pkg/__init__.py": "", "pkg/service.py": "def run():\n    from pkg.loops import schedule\n",
      "pkg/loops.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.service import run\n"},
     ["pkg.loops", "pkg.service", "pkg.loops"]),
    # relative imports, and `from package import module`
    ({"pkg/__init__.py": "", "pkg/sub/__init__.py": "", "pkg/sub/a.py": "from .. import b\n",
      "pkg/b.py": "from .sub import a\n"},
     ["pkg.b", "pkg.sub.a", "pkg.b"]),
    # a plain `import` inside a function
    ({"pkg/__init__.py": "import pkg.x\n", "pkg/x.py": "def f():\n    import pkg\n"},
     ["pkg", "pkg.x", "pkg"]),
])
def test_a_planted_cycle_is_found_and_named(tmp_path: Path, files: dict[str, str], cycle: list[str]) -> None:
    root = _package(tmp_path, files)
    assert find_cycle(import_graph(root)) == cycle
    with pytest.raises(AssertionError, match="import cycle: " + " -> ".join(cycle).replace(".", r"\.")):
        assert_acyclic(root)


def test_an_acyclic_package_passes_and_a_name_is_not_a_module(tmp_path: Path) -> None:
    root = _package(tmp_path, {"pkg/__init__.py": "VALUE = 1\n", "pkg/a.py": "from pkg import VALUE\n",
                               "pkg/b.py": "from pkg.a import VALUE\nimport json\n"})
    assert import_graph(root) == {"pkg": set(), "pkg.a": {"pkg"}, "pkg.b": {"pkg.a"}}
    assert_acyclic(root)


# What only the composition root (agent/app.py) builds: a command that builds one opens and closes it
# by hand again, beside the runtime, and two of a part (two sessions, two msal caches) can diverge.
WIRING = frozenset({"HttpClient", "open_store", "open_siem", "open_writer", "Archive", "TokenProvider"})


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The nodes under `if TYPE_CHECKING:`: names imported there exist for annotations only."""
    inside: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            for child in node.body:
                inside.update(ast.walk(child))
    return inside


def wiring(root: Path) -> list[str]:
    """`file:line name` for every call of a WIRING name (plain or as an attribute) and every import of
    one (an alias would hide a later call) in the .py files under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name | ast.Attribute):
                    names = [func.id if isinstance(func, ast.Name) else func.attr]
            elif isinstance(node, ast.ImportFrom) and node not in skip:
                names = [a.name for a in node.names]
            found += [f"{path.relative_to(root.parent)}:{node.lineno} {n}" for n in names if n in WIRING]
    return found


def test_no_cli_command_wires_a_part_of_its_own() -> None:
    assert (AGENT / "cli" / "reconcile.py").is_file(), "the scan reads the real commands"
    assert wiring(AGENT / "cli") == [], "commands take these from the Runtime (agent/app.py)"


def calls_of(root: Path, name: str) -> list[str]:
    """`file:line` of every call of `name` (plain or as an attribute) in the .py files under `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            func = node.func if isinstance(node, ast.Call) else None
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if called == name:
                found.append(f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}")
    return found


def test_token_providers_are_built_in_one_place() -> None:
    """msal's cache lives in a TokenProvider: one built beside the runtime's (Sentinel's reader, writer
    or anchor used to) asks Entra ID for a second token and is invalidated apart from the first."""
    assert calls_of(AGENT, "TokenProvider") == ["agent/auth.py:" + str(_line_of(AGENT / "auth.py",
                                                                                "= TokenProvider(tenant"))]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_a_planted_token_provider_is_found(tmp_path: Path) -> None:
    planted = "from agent import auth\ndef f(t, cfg):\n    return auth.TokenProvider(t, 'r', cfg.http)\n"
    root = _package(tmp_path, {"siem/__init__.py": "", "siem/vendor.py": planted})
    assert calls_of(root, "TokenProvider") == ["siem/vendor.py:3"]


@pytest.mark.parametrize(("text", "found"), [
    ("from agent.http import HttpClient\nasync def f(cfg):\n    async with HttpClient(cfg.http) as h:\n        pass\n",
     ["cli/cmd.py:1 HttpClient", "cli/cmd.py:3 HttpClient"]),
    ("def f(cfg):\n    from agent.store import open_store as o\n    return o(cfg.store)\n",
     ["cli/cmd.py:2 open_store"]),
    ("import agent.siem.registry\ndef f(c, cfg, h):\n    return agent.siem.registry.open_writer(c, cfg, h)\n",
     ["cli/cmd.py:3 open_writer"]),
    ("def f(store, t, cfg):\n    return Archive(store), mod.TokenProvider(t, t.endpoints.graph, cfg.http)\n",
     ["cli/cmd.py:2 Archive", "cli/cmd.py:2 TokenProvider"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from agent.http import HttpClient\n"
     "def f(rt) -> HttpClient:\n    return rt.http\n", []),
])
def test_a_planted_wiring_is_found(tmp_path: Path, text: str, found: list[str]) -> None:
    root = _package(tmp_path, {"cli/__init__.py": "", "cli/cmd.py": text})
    assert wiring(root) == found
