"""File and directory modes of everything the agent writes to local disk (archive, outage spool).

Records hold personal data (names, addresses, IP addresses), so objects are created owner-only
(0600 files, 0700 directories) unless `[store] file_mode` / `dir_mode` relax it. The mode is set
explicitly after creation: the process umask (0022 on most systems outside the systemd unit's
UMask=0077) would otherwise decide who can read the archive.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_dirs(path: Path, mode: int = DIR_MODE) -> None:
    """Create `path` and its missing parents with exactly `mode`; existing directories keep theirs
    (an operator may have set them, e.g. a group-readable store root)."""
    missing: list[Path] = []
    p = path
    while not p.is_dir() and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            continue  # made by a concurrent writer, with the same mode
        os.chmod(d, mode)


def write_new(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Create `path` (it must not exist), write `data` with exactly `mode` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits the operator asked for
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def open_new(path: Path, mode: int = FILE_MODE) -> int:
    """Open (creating if needed) a file for appending with exactly `mode` when created; returns the fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, mode)
    if os.fstat(fd).st_size == 0:
        os.fchmod(fd, mode)
    return fd
