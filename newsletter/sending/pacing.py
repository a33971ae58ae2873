"""How fast a run may go: the per-second and per-hour caps, and the error-storm guard that
pauses a run when nearly everything fails."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..settings import Settings


class Throttle:
    """The per-second and per-hour caps: ``exhausted`` says when the hour's budget is
    spent, ``room`` how many messages the next batch may carry, ``pace`` waits for the
    batch's slot and spends it. Each of ``shards`` processes keeps to its share of the
    caps (an hourly budget of at least one message)."""

    def __init__(
        self,
        settings: Settings,
        sent_last_hour: int,
        sleep: Callable[[float], None],
        shards: int = 1,
    ):
        self.per_second = settings.max_per_second / shards
        self.interval = 1 / self.per_second if self.per_second else 0.0
        self.hourly = max(1, settings.max_per_hour // shards)
        self.budget = self.hourly - sent_last_hour if settings.max_per_hour else None
        self.sleep = sleep
        self.next_slot = 0.0

    def exhausted(self) -> bool:
        return self.budget is not None and self.budget <= 0

    def room(self, wanted: int) -> int:
        """At most ``wanted`` messages, and no more than one second's worth or the hour's
        budget allow (at least one: a batch that may not go is stopped at its claim)."""
        room = wanted
        if self.per_second:
            room = min(room, int(self.per_second))
        if self.budget is not None:
            room = min(room, self.budget)
        return max(1, room)

    def pace(self, messages: int = 1) -> None:
        """Wait until a batch of ``messages`` may go; the next one waits as long as these
        take at the per-second cap."""
        pause = self.next_slot - time.monotonic()
        if pause > 0:
            self.sleep(pause)
        self.next_slot = time.monotonic() + self.interval * messages
        if self.budget is not None:
            self.budget -= messages


class StormGuard:
    """Trips when nearly every recent message failed: the server or relay refuses
    everything, and carrying on would only burn the list's reputation."""

    def __init__(self, window: int, share: float):
        self.recent: deque[bool] = deque(maxlen=window)
        self.share = share

    def add(self, failed: bool) -> None:
        self.recent.append(failed)

    @property
    def tripped(self) -> str | None:
        if len(self.recent) == self.recent.maxlen and sum(self.recent) >= self.share * len(
            self.recent
        ):
            return f"{sum(self.recent)} of the last {len(self.recent)} messages failed"
        return None
