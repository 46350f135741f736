"""The checked reading of one TOML table of a scenario: typed getters (fractions, counts,
durations, instants) that name the key in every error, and `finish`, which names the keys no
getter read, so a typo never silently changes what a test proves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.world.clock import parse_duration, parse_iso, seconds
from emulator.world.scenario import ScenarioError


class Table:
    """One TOML table; remembers which keys were read so leftovers can be named."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{where or 'scenario'} must be a table")
        self.data, self.where, self.used = data, where, set[str]()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kinds: tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        value = self.data.get(name, default)
        if name in self.data and (
            not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
        ):
            want = " or ".join(k.__name__ for k in kinds)
            raise ScenarioError(f"{self.key(name)}: expected {want}, got {type(value).__name__}")
        return value

    def fraction(self, name: str, default: float) -> float:
        value = float(self.get(name, (int, float), default))
        if not 0.0 <= value <= 1.0:
            raise ScenarioError(f"{self.key(name)}: {value} is not a fraction between 0 and 1")
        return value

    def count(self, name: str, default: int, minimum: int = 0) -> int:
        value: int = self.get(name, (int,), default)
        if value < minimum:
            raise ScenarioError(f"{self.key(name)}: {value} is below the minimum {minimum}")
        return value

    def duration(self, name: str, default: int) -> int:
        value = self.get(name, (str, int, float), None)
        if value is None:
            return default
        if isinstance(value, int | float):
            return seconds(value)
        try:
            ticks = parse_duration(value)
        except ValueError as exc:
            raise ScenarioError(f"{self.key(name)}: {exc}") from None
        if ticks < 0:
            raise ScenarioError(f"{self.key(name)}: a duration cannot be negative")
        return ticks

    def instant(self, name: str, default: str | None, origin: int) -> int:
        value = self.get(name, (str,), default)
        if value is None:
            raise ScenarioError(f"{self.key(name)} is required")
        return resolve_instant(value, origin, self.key(name))

    def table(self, name: str) -> Table:
        return Table(self.get(name, (dict,), {}), self.key(name))

    def tables(self, name: str) -> list[Table]:
        items = self.get(name, (list,), [])
        return [Table(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            where = f" in [{self.where}]" if self.where else ""
            raise ScenarioError(f"unknown key{'s' if len(extra) > 1 else ''}{where}: {', '.join(extra)}")


def resolve_instant(text: str, origin: int, key: str) -> int:
    """'-48h' / '+10m' relative to the start instant, or an RFC 3339 timestamp with a zone."""
    text = text.strip()
    if text[:1] in "+-":
        try:
            return origin + parse_duration(text)
        except ValueError as exc:
            raise ScenarioError(f"{key}: {exc}") from None
    try:
        return parse_iso(text, need_zone=True, need_time=True)
    except ValueError:
        raise ScenarioError(
            f"{key}: {text!r} is neither a relative time like '-48h' nor an RFC 3339 timestamp with a zone"
        ) from None
