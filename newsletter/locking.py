"""One sender at a time: an exclusive lock next to the database.

``fcntl.flock`` belongs to the open file, so the operating system releases it when the
process ends, however it ends: a worker killed with ``kill -9`` never leaves it stuck. The
lock file names the holder's pid, for the message that another process gets."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class LockBusy(RuntimeError):
    """Another process holds the sending lock."""


class SendingLock:
    def __init__(self, db_path: Path):
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockBusy(
                f"another newsletter process (pid {holder}) is sending from this database; "
                "wait for it, or stop it (a worker sends every edition on schedule)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    def __enter__(self) -> SendingLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
