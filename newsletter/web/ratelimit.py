"""Rate limits that hold across restarts and server processes: every request let through is
counted in the store, and a key may have at most ``limit`` requests younger than the window."""

from __future__ import annotations

import time

from ..store import Store


class RateLimiter:
    def __init__(self, store: Store, window: float):
        self.store = store
        self.window = window

    def allow(self, key: str, limit: int, now: float | None = None) -> bool:
        """Count one request for ``key``; False (and not counted) once it had ``limit``."""
        now = time.time() if now is None else now
        return self.store.take_rate_limit_slot(key, limit, now - self.window, now)

    def give_back(self, key: str, at: float) -> None:
        """Uncount the request :meth:`allow` counted for ``key`` at ``at``."""
        self.store.give_back_rate_limit_slot(key, at)
