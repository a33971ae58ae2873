"""One sender per shard of the list at a time: locks next to the database.

``fcntl.flock`` belongs to the open file, so the operating system releases it when the
process ends, however it ends: a worker killed with ``kill -9`` never leaves it stuck.

A sender of the whole list holds ``newsletter.db.lock``; a sender of shard ``i/N`` holds
``newsletter.db.lock.i-of-N`` (see :class:`newsletter.models.Shard`). Either file names its
holder's pid, for the message another process gets. Shards of one count can run side by
side, but shards of different counts overlap (subscriber 3 is in shard 1/2 and in shard
0/3), and the whole list overlaps every shard: so every sender also holds a shared lock on
``newsletter.db.lock.of-N`` for its count N (1 for the whole list), taken before it checks
that no file of another count is held, which makes two senders of different counts always
see each other. Senders make these checks one at a time, under ``newsletter.db.lock.guard``
(held for an instant).

A PostgreSQL store needs no lock: senders on any hosts claim rows there under leases (see
:mod:`newsletter.store.postgres`), so the lock of a ``postgresql://`` database is taken at
once and holds nothing; ``--shard`` then only narrows the list a sender looks at."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from ..models import WHOLE_LIST, Shard
from ..store import is_postgresql


class LockBusy(RuntimeError):
    """Another process sends (part of) the same list: ``holders`` says who ("pid 12", or
    "shard 0/2: pid 12, shard 1/2: pid 13")."""

    def __init__(self, message: str, holders: str):
        super().__init__(message)
        self.holders = holders


class SendingLock:
    def __init__(self, db_path: Path, shard: Shard = WHOLE_LIST):
        #: A database shared by hosts, whose senders hold leases instead (PostgreSQL).
        self.unneeded = is_postgresql(db_path)
        self.db_path = Path(db_path)
        self.shard = shard
        #: The file that names the holder of this shard.
        self.path = self._shard_file(self.shard)
        self._fds: list[int] = []

    def _shard_file(self, shard: Shard) -> Path:
        if shard.whole:
            return Path(f"{self.db_path}.lock")
        return Path(f"{self.db_path}.lock.{shard.index}-of-{shard.count}")

    def _count_file(self, count: int) -> Path:
        return Path(f"{self.db_path}.lock.of-{count}")

    def acquire(self) -> None:
        if self.unneeded:
            return
        try:
            # Senders check one another one at a time: a check tries each lock for an
            # instant, and two checks at once would each take the other's for a sender.
            guard = self._open(Path(f"{self.db_path}.lock.guard"))
            fcntl.flock(guard, fcntl.LOCK_EX)
            fcntl.flock(self._open(self._count_file(self.shard.count)), fcntl.LOCK_SH)
            prefix = f"{self.db_path.name}.lock.of-"
            counts = {
                int(suffix)
                for other in self.db_path.parent.iterdir()
                if other.name.startswith(prefix)
                and (suffix := other.name.removeprefix(prefix)).isdigit()
            }
            for count in sorted(counts - {self.shard.count}):
                if _held(self._count_file(count)):
                    holders = self._holders(count)
                    raise LockBusy(
                        f"another newsletter process is sending from this database "
                        f"({holders}), and {self._what()} overlaps what it sends; wait for "
                        "it, or stop it (shards sent side by side must have the same count)",
                        holders,
                    )
            fd = self._open(self.path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holders = _pid(self.path)
                raise LockBusy(
                    f"another newsletter process ({holders}) is sending {self._what()} from "
                    "this database; wait for it, or stop it (a worker sends every edition on "
                    "schedule)",
                    holders,
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            fcntl.flock(guard, fcntl.LOCK_UN)
        except BaseException:
            self.release()
            raise

    def _what(self) -> str:
        return "the whole list" if self.shard.whole else f"shard {self.shard}"

    def _holders(self, count: int) -> str:
        """The pids holding the shards of ``count``, e.g. "shard 0/2: pid 12, shard 1/2: pid
        13"."""
        shards = [WHOLE_LIST] if count == 1 else [Shard(i, count) for i in range(count)]
        found = [
            f"{'' if shard.whole else f'shard {shard}: '}{_pid(path)}"
            for shard in shards
            if (path := self._shard_file(shard)).exists() and _held(path)
        ]
        return ", ".join(found) or "pid ?"

    def _open(self, path: Path) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fds.append(fd)
        return fd

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing a file releases its lock

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


def _held(path: Path) -> bool:
    """Whether some process holds a lock on ``path`` (checked by trying for it at once)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pid(path: Path) -> str:
    try:
        return "pid " + (path.read_text().strip() or "?")
    except OSError:
        return "pid ?"
