"""Reading one TOML table of the config: typed getters that name the key, and secret references.

The leaf under every config parser (`agent.config`, each SIEM vendor's `config.py`): it imports
nothing of the agent but its errors, so a parser anywhere can use it without an import cycle.
Every getter records the key it read, so `Table.finish` rejects the leftovers by name.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import ConfigError

T = TypeVar("T")

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# No duration the agent reads means anything beyond a century (the longest, initial_lookback,
# reaches back to old samples); past this, date arithmetic overflows rather than being wrong.
MAX_DURATION = timedelta(days=36500)
MAX_INTEGER = 2**31 - 1  # counts, sizes and rates; keys that need more say so


def parse_duration(text: str, key: str = "duration") -> timedelta:
    """Parse "90s", "15m", "6h", "7d" (what operators write) into a timedelta."""
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"{key}: {text!r} is not a duration (use e.g. '30s', '15m', '6h', '7d')")
    try:
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    except OverflowError:
        raise ConfigError(f"{key}: {text!r} is too long a duration") from None


def _show(d: timedelta) -> str:
    """A bound as an operator writes it ("30d", "1h")."""
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Secret:
    """A secret referenced by file or environment variable; read only when used, never printed."""

    source: str  # "file:<path>" or "env:<NAME>" (the reference, not the value)

    def reveal(self) -> str:
        kind, _, ref = self.source.partition(":")
        if kind == "env":
            value = os.environ.get(ref)
            if value is None:
                raise ConfigError(f"environment variable {ref} (a secret reference) is not set")
            return value.strip()
        try:
            return Path(ref).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {ref}: {exc.strerror}") from None

    def __repr__(self) -> str:
        return f"Secret({self.source})"


class Table:
    """Reads one TOML table, tracking which keys were used so leftovers can be rejected by name."""

    def __init__(self, data: Mapping[str, Any], where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, kind: type[T] | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self.where}.{key}: expected {kinds[0].__name__}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(f"{self.where}.{key}: expected {kinds[0].__name__}, got {type(value).__name__}")
        return value

    def string(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> Any:
        value = self._get(key, str, default)
        if choices and value is not None and value not in choices:
            raise ConfigError(f"{self.where}.{key}: {value!r} is not one of {', '.join(choices)}")
        return value

    def required(self, key: str) -> str:
        value = self.string(key)
        if not value:
            raise ConfigError(f"{self.where}.{key} is required")
        return str(value)

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
        value: int = self._get(key, int, default)
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: {value} is below the minimum {minimum}")
        if value > maximum:
            raise ConfigError(f"{self.where}.{key}: {value} is above the maximum {maximum}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, maximum: float = float(MAX_INTEGER)) -> float:
        value = float(self._get(key, (int, float), default))
        if not math.isfinite(value):
            raise ConfigError(f"{self.where}.{key}: {value} is not a finite number")
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: {value} is below the minimum {minimum}")
        if value > maximum:
            raise ConfigError(f"{self.where}.{key}: {value} is above the maximum {maximum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._get(key, bool, default))

    def duration(self, key: str, default: timedelta, *, positive: bool = False,
                 maximum: timedelta = MAX_DURATION) -> timedelta:
        """A duration ("15m", or a number of seconds): never negative, NaN or infinite, at most
        `maximum`, and above zero when `positive` (an interval of 0 would spin)."""
        name = f"{self.where}.{key}"
        value = self._get(key, (str, int, float), None)
        if value is None:
            return default
        if isinstance(value, str):
            seconds = parse_duration(value, name).total_seconds()
        elif math.isfinite(value):
            seconds = float(value)
        else:
            raise ConfigError(f"{name}: {value} is not a duration (a finite number of seconds, or e.g. '15m')")
        if seconds < 0:
            raise ConfigError(f"{name}: {value!r} is negative; durations count forward (e.g. '2h')")
        if positive and seconds == 0:
            raise ConfigError(f"{name}: must be more than 0")
        if seconds > maximum.total_seconds():
            raise ConfigError(f"{name}: {value!r} is above the maximum {_show(maximum)}")
        return timedelta(seconds=seconds)

    def path(self, key: str, base: Path | None, default: Path | None = None) -> Any:
        value = self.string(key)
        if value is None:
            return default
        p = Path(os.path.expandvars(value)).expanduser()
        return p if p.is_absolute() or base is None else (base / p)

    def secret(self, key: str, base: Path | None) -> Secret | None:
        """`<key>_file` (path, env vars expanded for systemd's $CREDENTIALS_DIRECTORY) or `<key>_env`."""
        if key in self.data:
            raise ConfigError(f"{self.where}.{key}: secrets are never written in the config; "
                              f"use {key}_file or {key}_env")
        path = self.path(f"{key}_file", base)
        env = self.string(f"{key}_env")
        if path and env:
            raise ConfigError(f"{self.where}: set only one of {key}_file and {key}_env")
        if path:
            return Secret(f"file:{path}")
        return Secret(f"env:{env}") if env else None

    def list_of_str(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, list, None)
        if value is None:
            return default
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.where}.{key}: expected a list of strings")
        return tuple(value)

    def table(self, key: str) -> Table:
        return Table(self._get(key, dict, {}), f"{self.where}.{key}" if self.where else key)

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            where = f" in [{self.where}]" if self.where else ""
            raise ConfigError(f"unknown key{'s' if len(extra) > 1 else ''}{where}: {', '.join(extra)}")
