"""When a subscriber's edition is due: their own local date and hour, in their timezone.

An edition is named by the subscriber's local date, so a reader in Auckland and one in
Los Angeles each get "their" Monday edition at their own delivery hour, once. The rules
are pure functions of the clock, so they can be tested with any instant, DST changes
included.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from ..models import Status, Subscriber


def local_now(subscriber: Subscriber, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(subscriber.timezone))


def due_edition(subscriber: Subscriber, now: datetime) -> date | None:
    """The edition (the subscriber's local date) that is due at ``now``, if any: their
    local delivery hour has come, they are active and not paused, and for weekly readers
    it is their day. Whether it was already sent is the ledger's to say."""
    if subscriber.status != Status.ACTIVE:
        return None
    local = local_now(subscriber, now)
    today = local.date()
    if local.hour < subscriber.delivery_hour:
        return None
    if subscriber.paused_until and today.isoformat() <= subscriber.paused_until:
        return None
    if subscriber.frequency == "weekly" and today.weekday() != subscriber.weekly_day:
        return None
    return today


def due_now(subscribers: list[Subscriber], now: datetime) -> dict[date, list[Subscriber]]:
    """The subscribers whose edition is due at ``now``, grouped by edition date."""
    groups: dict[date, list[Subscriber]] = {}
    for subscriber in subscribers:
        edition = due_edition(subscriber, now)
        if edition is not None:
            groups.setdefault(edition, []).append(subscriber)
    return groups
