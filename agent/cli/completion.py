"""`agent completion bash|zsh`: a shell completion script generated from the CLI's own parser.

Generated rather than hand-written so that a new command, option or choice is completable the day
it is added, and a removed one stops being offered. Static: the script never runs the agent while
completing (no config read, no start-up cost at every TAB).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, cast

from agent.streams import STREAMS

# Values worth offering for options whose argparse definition has no `choices`.
VALUES: dict[str, tuple[str, ...]] = {"--stream": tuple(STREAMS)}
# Options whose value is a path: completed with file names.
FILES = frozenset({"--config", "-c", "--out", "--dir", "--truth", "--records", "--scenario"})


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that keeps what completion reads in public attributes of its own: every argument
    added (`arguments`), its subcommands (`commands`) and the help each was added with (`summary`).
    argparse holds these only in private attributes, which a new Python may rename."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arguments: list[argparse.Action] = []  # set first: ArgumentParser.__init__ adds -h through add_argument
        self.commands: dict[str, Parser] = {}
        self.summary = ""
        self._subcommands: Any = None
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.arguments.append(action)
        return action

    def add_commands(self, **kwargs: Any) -> None:
        """The COMMAND positional (`add_subparsers(**kwargs)`); then `add_command` for each one."""
        self._subcommands = self.add_subparsers(**kwargs)

    def add_command(self, name: str, **kwargs: Any) -> Parser:
        """A subcommand, as `add_parser(name, **kwargs)` builds it (a Parser too), remembered with its help."""
        parser = cast(Parser, self._subcommands.add_parser(name, **kwargs))
        parser.summary = kwargs.get("help", "")
        self.commands[name] = parser
        return parser


@dataclass
class Command:
    name: str
    help: str = ""
    flags: list[tuple[str, ...]] = field(default_factory=list)  # option strings that take no value
    valued: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)  # option strings -> values
    helps: dict[tuple[str, ...], str] = field(default_factory=dict)
    choices: tuple[str, ...] = ()  # of its first positional argument


def commands(parser: Parser) -> list[Command]:
    """Every subcommand of `parser`, with its options and the values they accept."""
    out = []
    for name, p in parser.commands.items():
        cmd = Command(name, p.summary)
        for a in p.arguments:
            if not a.option_strings:
                if a.choices and not cmd.choices:
                    cmd.choices = tuple(str(c) for c in a.choices)
                continue
            opts = tuple(a.option_strings)
            cmd.helps[opts] = (a.help or "") if a.help != argparse.SUPPRESS else ""
            if a.nargs == 0:
                cmd.flags.append(opts)
            else:
                cmd.valued[opts] = tuple(str(c) for c in a.choices) if a.choices else VALUES.get(opts[0], ())
        out.append(cmd)
    return out


def script(parser: Parser, shell: str) -> str:
    return (_bash if shell == "bash" else _zsh)(parser.prog, commands(parser))


def _bash(prog: str, cmds: list[Command]) -> str:
    fn = f"_{prog.replace('-', '_')}_complete"
    cases = []
    for c in cmds:
        values = []
        for opts, vals in c.valued.items():
            pattern = "|".join(opts)
            action = (f'COMPREPLY=($(compgen -W "{" ".join(vals)}" -- "$cur"))' if vals
                      else 'COMPREPLY=($(compgen -f -- "$cur"))' if set(opts) & FILES
                      else "compopt +o default 2>/dev/null; COMPREPLY=()")  # a time or a name: not a file
            values.append(f"                {pattern}) {action}; return;;")
        words = [o for opts in (*c.flags, *c.valued) for o in opts]
        positional = f'COMPREPLY=($(compgen -W "{" ".join(c.choices)}" -- "$cur")); return' if c.choices else "return"
        cases.append(f"""        {c.name})
            case "$prev" in
{chr(10).join(values) if values else "                '') ;;"}
            esac
            if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur")); return; fi
            {positional};;""")
    names = " ".join(c.name for c in cmds)
    return f"""# bash completion for {prog}; load with: source <({prog} completion bash)
{fn}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in -*) ;; *) cmd="${{COMP_WORDS[i]}}"; break;; esac
    done
    if [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "{names} --help --version" -- "$cur"))
        return
    fi
    case "$cmd" in
{chr(10).join(cases)}
    esac
}}
complete -o default -F {fn} {prog}
"""


def _q(text: str) -> str:
    """A zsh _arguments/_describe description: single-quoted, brackets and colons escaped."""
    text = " ".join(text.split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")
    return text.replace("'", "'\\''")


def _zsh(prog: str, cmds: list[Command]) -> str:
    fn = f"_{prog.replace('-', '_')}"
    described = "\n".join(f"        '{c.name}:{_q(c.help)}'" for c in cmds)
    cases = []
    for c in cmds:
        specs = []
        for opts in c.flags:
            specs.append(_zsh_spec(opts, c.helps.get(opts, ""), ""))
        for opts, vals in c.valued.items():
            action = f"({' '.join(vals)})" if vals else "_files" if set(opts) & FILES else " "
            specs.append(_zsh_spec(opts, c.helps.get(opts, ""), f":value:{action}"))
        if c.choices:
            specs.append(f"'1:{c.name}:({' '.join(c.choices)})'")
        body = " \\\n                ".join(specs) if specs else "'*::args:_files'"
        cases.append(f"        {c.name})\n            _arguments -s \\\n                {body} ;;")
    return f"""#compdef {prog}
# zsh completion for {prog}; load with: source <({prog} completion zsh)  (after compinit)
{fn}() {{
    local -a commands
    commands=(
{described}
    )
    if (( CURRENT == 2 )); then
        _describe -t commands '{prog} command' commands
        return
    fi
    local cmd=$words[2]
    shift words
    (( CURRENT-- ))
    case $cmd in
{chr(10).join(cases)}
    esac
}}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    {fn} "$@"
else
    compdef {fn} {prog}
fi
"""


def _zsh_spec(opts: tuple[str, ...], help_text: str, value: str) -> str:
    desc = f"[{_q(help_text)}]" if help_text else ""
    if len(opts) == 1:
        return f"'{opts[0]}{desc}{value}'"
    group = " ".join(opts)
    return f"'({group})'{{{','.join(opts)}}}'{desc}{value}'"
