"""Structured logging: JSON lines for services, readable text on a terminal, secrets scrubbed.

Messages are short sentences; data goes in `extra={"fields": {...}}`. Every secret the agent
reads (client secrets, passphrases, access tokens) is registered here and replaced by `***` in
any record that would contain it, as a last line of defence behind never logging them at all.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register_secret(value: str) -> str:
    """Remember a secret value so it can never be printed; returns it unchanged."""
    if len(value) >= 6:
        with _LOCK:
            _SECRETS.add(value)
    return value


def scrub(text: str) -> str:
    with _LOCK:
        secrets = list(_SECRETS)
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return scrub(orjson.dumps(doc, default=str).decode())


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{ts} {record.levelname:<7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def setup(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure the root `agent` logger once; JSON when not on a TTY ("auto")."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    logger = logging.getLogger("agent")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log one event with structured fields."""
    logger.log(level, message, extra={"fields": fields})
