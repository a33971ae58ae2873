"""Rate limits that hold across restarts and server processes: every request let through is
a row of ``rate_limit_hits`` (this module is the only code that touches that table), and a
key may have at most ``limit`` rows younger than the window."""

from __future__ import annotations

import time

from ..store.database import Store


class RateLimiter:
    def __init__(self, store: Store, window: float):
        self.store = store
        self.window = window

    def allow(self, key: str, limit: int, now: float | None = None) -> bool:
        """Count one request for ``key``; False (and not counted) once it had ``limit``."""
        now = time.time() if now is None else now
        conn = self.store.conn
        with self.store.transaction():
            conn.execute("DELETE FROM rate_limit_hits WHERE at <= ?", [now - self.window])
            (count,) = conn.execute(
                "SELECT count(*) FROM rate_limit_hits WHERE key = ?", [key]
            ).fetchone()
            if count >= limit:
                return False
            conn.execute("INSERT INTO rate_limit_hits (key, at) VALUES (?, ?)", [key, now])
        return True
