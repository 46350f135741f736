"""The inputs of `agent audit-collector`, read as data: the records a collector wrote, the emulator's
ground truth, and its fault and request logs. An unreadable file is an `AuditError` naming it.

Records: NDJSON (an object per line, or an array per line, e.g. one blob per line), a JSON array,
or CSV with a header (its dialect sniffed: `,` `;` tab or `|`, or `--delimiter`); the id is the
first of `--id-field` found (dotted paths for nested JSON, default `id`, `Id`, `ID`). Ids are
compared case-insensitively (they are GUIDs or GUID-based).

It reads the emulator's output files only; it does not import the emulator's serving code (the
witness stays independent of what it checks, and of this report).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from emulator.world.clock import parse_datetime as parse_time

CSV_DELIMITERS = ",;\t|"
DEFAULT_ID_FIELDS = ("id", "Id", "ID")


class AuditError(Exception):
    """An input file cannot be read; the message names it."""


# -- reading ------------------------------------------------------------------------------------


def _ndjson(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of every non-empty line; value None for an unparseable line."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, orjson.loads(line)
            except orjson.JSONDecodeError:
                yield n, None


def _get(record: Any, dotted: str) -> Any:
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@dataclass
class Collected:
    """What the collector wrote: id -> copies, plus what could not be read."""

    counts: Counter[str] = field(default_factory=Counter)
    unparseable: int = 0  # lines or rows that are not records
    without_id: int = 0  # records with none of the id fields

    @property
    def mostly_unreadable(self) -> bool:
        """More rows/lines unreadable than read: the format, delimiter or id field is wrong, and
        any verdict would only describe the misreading."""
        return self.unparseable + self.without_id > sum(self.counts.values())


def read_records(
    paths: Iterable[Path], id_fields: tuple[str, ...], fmt: str = "auto", delimiter: str | None = None
) -> Collected:
    out = Collected()

    def take(record: Any) -> None:
        if not isinstance(record, dict):
            out.unparseable += 1
            return
        for name in id_fields:
            value = _get(record, name)
            if isinstance(value, str | int) and str(value).strip():
                out.counts[str(value).strip().lower()] += 1
                return
        out.without_id += 1

    for path in paths:
        kind = fmt
        try:
            if kind == "auto":
                kind = "csv" if delimiter or path.suffix.lower() in (".csv", ".tsv") else _sniff(path)
            if kind == "csv":
                with open(path, newline="", encoding="utf-8-sig") as f:
                    for row in csv.DictReader(f, dialect=_dialect(f, delimiter)):
                        take({k: v for k, v in row.items() if k is not None})
            elif kind == "json":
                data = orjson.loads(path.read_bytes())
                for record in data if isinstance(data, list) else [data]:
                    take(record)
            else:
                for _, value in _ndjson(path):
                    if value is None:
                        out.unparseable += 1
                    for record in value if isinstance(value, list) else [value] if value is not None else []:
                        take(record)
        except (OSError, UnicodeDecodeError, orjson.JSONDecodeError, csv.Error) as exc:
            raise AuditError(f"cannot read records {path}: {exc}") from None
    return out


def _dialect(f: Any, delimiter: str | None) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect: `--delimiter` if given, else sniffed from the head of the file (Excel in
    many locales writes `;`, exports often use tabs); plain comma CSV when sniffing cannot tell."""
    if delimiter:
        return type("Given", (csv.excel,), {"delimiter": delimiter})
    head = f.read(65536)
    f.seek(0)
    try:
        return csv.Sniffer().sniff(head, delimiters=CSV_DELIMITERS)
    except csv.Error:
        return csv.excel


def _sniff(path: Path) -> str:
    """'json' for a file holding one JSON array (possibly pretty-printed), else 'ndjson'."""
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if not head.startswith(b"["):
        return "ndjson"
    try:
        orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return "ndjson"  # an array per line
    return "json"


@dataclass(frozen=True)
class TruthRow:
    stream: str
    id: str
    tenant: str
    event_time: datetime
    visible_at: datetime
    content_id: str | None
    available: bool


def read_truth(path: Path) -> list[TruthRow]:
    rows = []
    try:
        for n, value in _ndjson(path):
            if not isinstance(value, dict):
                raise AuditError(f"{path}:{n}: not a truth line")
            if value.get("upstream_lost"):  # lost inside Microsoft: no collector could have it
                continue
            rows.append(
                TruthRow(
                    stream=str(value["stream"]),
                    id=str(value["id"]).lower(),
                    tenant=str(value.get("tenant", "")),
                    event_time=parse_time(value["event_time"]),
                    visible_at=parse_time(value["visible_at"]),
                    content_id=value.get("content_id"),
                    available=bool(value.get("available", True)),
                )
            )
    except OSError as exc:
        raise AuditError(f"cannot read truth {path}: {exc.strerror}") from None
    except (KeyError, ValueError) as exc:
        raise AuditError(f"{path}: not an emulator truth file ({exc})") from None
    return rows


def read_lines(path: Path | None, what: str) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        return [v for _, v in _ndjson(path) if isinstance(v, dict)]
    except OSError as exc:
        raise AuditError(f"cannot read {what} {path}: {exc.strerror}") from None
