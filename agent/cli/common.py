"""What every command shares: the exit codes, loading the config, narrowing it to `--tenant` and
`--stream`, and writing a report to `--out` or stdout.

A leaf of `agent/cli/`: the command modules import it, it imports none of them (nor `main`), so the
package has no import cycle.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from agent import config
from agent.errors import AgentError, ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_GAPS = 0, 1, 2, 3


def load(path: str) -> config.Config:
    """The config at `path`, with logging set up as it asks (on stderr)."""
    from agent import logs

    cfg = config.load(path)
    logs.setup(cfg.log.level, cfg.log.format)
    return cfg


def preflight(cfg: config.Config) -> None:
    """A secret file that is missing or unreadable is a config error (exit 2) before any work starts,
    as `agent check` reports it, not a collection failure later."""
    from agent import preflight as checks

    found = checks.problems(cfg)
    if found:
        raise ConfigError("; ".join(found))


def select(cfg: config.Config, tenants: Sequence[str] | None) -> config.Config:
    """Only the tenants named (by id or name); every tenant when none is named."""
    if not tenants:
        return cfg
    return dataclasses.replace(cfg, tenants=tuple(cfg.tenant(t) for t in tenants))


def known_streams(cfg: config.Config, streams: Sequence[str] | None) -> None:
    """A misspelt --stream is a usage error, never an empty answer that looks like "nothing stored"."""
    for s in streams or ():
        if not any(s in t.streams for t in cfg.tenants):
            from agent.streams import STREAMS

            hint = "" if s in STREAMS else f"; valid: {', '.join(STREAMS)}"
            raise ConfigError(f"--stream {s}: no configured tenant collects it{hint}")


def tenant_labels(cfg: config.Config) -> dict[str, str]:
    """Tenant id -> the label a person reads (the config's name, else the id)."""
    return {t.id: t.label for t in cfg.tenants}


def emit(data: bytes, out: str | None) -> None:
    """`data` to the file `out`, else to stdout."""
    if out:
        from pathlib import Path

        try:
            Path(out).write_bytes(data)
        except OSError as exc:
            raise AgentError(f"cannot write the report to {out}: {exc.strerror}") from None
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
