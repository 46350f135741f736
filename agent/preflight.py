"""What `agent check` can prove about a config without the network.

The parser checks shape (types, ranges, unknown keys); this module checks what the shape points
at, as the user that will run the service: every secret file exists and is readable, every
environment variable a secret or path names is set, and the placeholders of the example config
(all-zero GUIDs, an unexpanded `${CREDENTIALS_DIRECTORY}`) have been replaced. systemd runs
`agent check` as `ExecStartPre`, so each problem it misses here becomes a failing service later.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.config import Config, Secret

_ZERO_GUID = re.compile(r"^0{8}-0{4}-0{4}-0{4}-0{12}$")
_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
# Field names that differ from the config key a user wrote.
_KEY = {"secret": "client_secret"}


def problems(cfg: Config) -> list[str]:
    """Every problem found, each naming the config key (and the file it points at); empty when none."""
    where = f"{cfg.path}: " if cfg.path else ""
    found = [f"{where}{p}" for p in _placeholders(cfg)]
    for key, value in _references(cfg):
        problem = _reference_problem(key, value)
        if problem:
            found.append(f"{where}{problem}")
    found += [f"{where}{p}" for p in _backfill_policy(cfg)]
    return found


def _backfill_policy(cfg: Config) -> Iterator[str]:
    """`[service] backfill` other than "off" needs the SIEM's write keys, as `reconcile --backfill` does:
    said now, not as a failing scheduled backfill hours after the service started."""
    if cfg.service.backfill == "off" or cfg.siem is None:
        return
    from agent.auth import TokenProviders
    from agent.errors import AgentError
    from agent.http import HttpClient
    from agent.siem.registry import open_writer

    try:  # builds the writer only: no session, no token, no request
        open_writer(cfg.siem, cfg, HttpClient(cfg.http), TokenProviders(cfg.http))
    except AgentError as exc:
        yield f"service.backfill = {cfg.service.backfill!r}: {exc}"


def _placeholders(cfg: Config) -> Iterator[str]:
    for i, t in enumerate(cfg.tenants):
        for key, value in (("id", t.id), ("client_id", t.client_id)):
            if _ZERO_GUID.match(value):
                yield (f"tenants[{i}].{key}: {value} is the example's placeholder; put your "
                       f"{'tenant' if key == 'id' else 'app registration'}'s GUID here")


def _references(cfg: Config) -> Iterator[tuple[str, Secret | Path]]:
    """(config key, value) of every secret and file the config names."""
    for i, t in enumerate(cfg.tenants):
        yield from _walk(t.credential, f"tenants[{i}]")
    yield from _walk(cfg.store, "store")
    yield from _walk(cfg.http, "http")
    for i, hook in enumerate(cfg.alerts.webhooks):
        yield from _walk(hook, f"alerts.webhooks[{i}]")
    for i, mail in enumerate(cfg.alerts.email):
        yield from _walk(mail, f"alerts.email[{i}]")
    for name, table in cfg.extra.items():
        yield from _walk(table, name)
    yield from _walk(cfg.siem, "siem")


def _walk(obj: Any, where: str) -> Iterator[tuple[str, Secret | Path]]:
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _walk(item, f"{where}[{i}]")
        return
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{where}.{_KEY.get(f.name, f.name)}"
        if isinstance(value, (Secret, Path)):
            yield key, value
        elif f.name in ("backfill", "credential", "vendor"):
            yield from _walk(value, where)  # flattened in the file: [siem] hec_token, [[tenants]] client_secret
        elif dataclasses.is_dataclass(value) or isinstance(value, (list, tuple)):
            yield from _walk(value, key)


def _reference_problem(key: str, value: Secret | Path) -> str | None:
    if isinstance(value, Secret):
        kind, _, ref = value.source.partition(":")
        if kind == "env":
            return None if ref in os.environ else f"{key}_env: environment variable {ref} is not set"
        return _file_problem(f"{key}_file", Path(ref), must_read=True)
    return _file_problem(key, value, must_read=key.endswith("_file"))


def _file_problem(key: str, path: Path, *, must_read: bool) -> str | None:
    unset = _UNSET_VAR.search(str(path))
    if unset:  # os.path.expandvars leaves an unset variable as written
        var = unset.group(1)
        hint = (" (systemd sets it for a unit with LoadCredential=; outside systemd, write the path)"
                if var == "CREDENTIALS_DIRECTORY" else "")
        return f"{key}: {path}: ${var} is not set{hint}"
    if not must_read:
        return None
    try:
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"{key}: {path} does not exist"
    except IsADirectoryError:
        return f"{key}: {path} is a directory, not a file"
    except PermissionError:
        return f"{key}: {path} is not readable by this user (uid {os.geteuid()}); the service reads it as itself"
    except OSError as exc:
        return f"{key}: cannot read {path}: {exc.strerror or exc}"
    return None
