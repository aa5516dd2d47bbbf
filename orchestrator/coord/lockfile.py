"""One server per SQLite file: an exclusive lock held for the server process's lifetime.

SQLite is the embedded single-server default; two servers on one file would both lead
(the lease would keep them apart, but their in-process caches and signals would not
reach each other). The lock is an OS-level flock, released by the kernel when the
process dies, so a server killed with -9 never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from orchestrator.errors import DockyardError


class AlreadyServed(DockyardError):
    status, code = 409, "already_served"


_held: dict[str, int] = {}  # path -> fd, kept open for the process's lifetime


def hold(db_file: Path) -> None:
    path = str(Path(db_file).resolve()) + ".lock"
    if path in _held:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AlreadyServed(
            f"another dockyard server (pid {other}) already uses the SQLite database {db_file}; SQLite serves "
            "one server only — stop that one, or point every server at one PostgreSQL database "
            "(--database-url postgresql+psycopg://...) to run several") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[path] = fd


def release(db_file: Path) -> None:
    path = str(Path(db_file).resolve()) + ".lock"
    fd = _held.pop(path, None)
    if fd is not None:
        os.close(fd)
