"""`agent completion bash|zsh`: the script loads in a real shell and completes what the parser accepts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.completion import commands
from agent.cli.main import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def path_with_agent(tmp_path: Path) -> dict[str, str]:
    """An `agent` executable on PATH, as an installed wheel provides."""
    exe = tmp_path / "bin" / "agent"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m agent \"$@\"\n")
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{exe.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHONPATH": str(REPO)}


def _complete(env: dict[str, str], line: str, cwd: Path) -> list[str]:
    """What bash offers for TAB at the end of `line` (the function `complete -p agent` names)."""
    words = line.split(" ")
    script = ("source <(agent completion bash) || exit 9\n"
              "fn=$(complete -p agent | sed -E 's/.* -F ([^ ]+) .*/\\1/')\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "$fn agent \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_registers_and_completes_subcommands_options_and_choices(
        path_with_agent: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "-c", "source <(agent completion bash); complete -p agent"],
                          env=path_with_agent, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "-F" in proc.stdout and proc.stdout.strip().endswith(" agent"), proc.stderr

    every = set(_complete(path_with_agent, "agent ", tmp_path))
    assert set(COMMANDS) | {"completion"} <= every
    assert _complete(path_with_agent, "agent rec", tmp_path) == ["reconcile"]
    assert set(_complete(path_with_agent, "agent reconcile --b", tmp_path)) == {"--backfill"}
    assert set(_complete(path_with_agent, "agent reconcile --format ", tmp_path)) == {"json", "md", "html", "text"}
    assert "graph.directory_audits" in _complete(path_with_agent, "agent collect --stream graph.d", tmp_path)
    assert _complete(path_with_agent, "agent completion z", tmp_path) == ["zsh"]
    (tmp_path / "agent.toml").write_text("")
    assert _complete(path_with_agent, "agent run --config age", tmp_path) == ["agent.toml"]


def test_the_script_follows_the_parser() -> None:
    """Every subcommand and option string of the parser is in the script: none is hand-maintained."""
    from agent.cli.completion import script

    text = script(build_parser(), "bash")
    for cmd in commands(build_parser()):
        assert f"        {cmd.name})" in text
        for opts in (*cmd.flags, *cmd.valued):
            assert all(o in text for o in opts), (cmd.name, opts)


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_loads_and_registers(path_with_agent: dict[str, str]) -> None:
    proc = subprocess.run(["zsh", "-fc", "autoload -U compinit && compinit -u && source <(agent completion zsh) "
                           "&& print -r -- $_comps[agent]"], env=path_with_agent, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "_agent", proc.stderr


def test_an_unknown_shell_is_a_usage_error(path_with_agent: dict[str, str]) -> None:
    proc = subprocess.run(["agent", "completion", "fish"], env=path_with_agent, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
