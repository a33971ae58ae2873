"""What a run of the delivery loop reports: one outcome per subscriber, why it stopped
early (if it did), and where its time went."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date

from .ledger import Refusal


@dataclass
class Outcome:
    email: str
    status: str  # sent | would-send | skipped | failed | rejected | suppressed
    detail: str
    papers: int = 0
    message_id: str | None = None
    #: Why the ledger refused the claim, for the caller to word (``detail`` is its name).
    refusal: Refusal | None = None

    def to_dict(self) -> dict:
        fields = {k: v for k, v in vars(self).items() if k != "refusal"}
        return {**fields, "refusal": self.refusal.reason if self.refusal else None}


@dataclass
class SendStats:
    """Where the time of a run went, in seconds of wall time. ``rank`` is planning the
    edition; ``deliver`` is the loop that sends it, within which ``render`` (the parts of
    each email), ``compose`` (its MIME message), ``ledger`` (claims and records, one
    transaction per batch: the answers to the last batch and the claims of this one) and
    ``wait`` (for a free connection, while the transport hands the previous batch over)
    take turns: each batch is rendered while the one before it is on the wire.
    ``messages`` were handed to the transport, in ``batches``."""

    total: float = 0.0
    rank: float = 0.0
    deliver: float = 0.0
    render: float = 0.0
    compose: float = 0.0
    ledger: float = 0.0
    wait: float = 0.0
    messages: int = 0
    batches: int = 0

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``step``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self, step, getattr(self, step) + time.perf_counter() - start)

    def to_dict(self) -> dict[str, float | int]:
        return {k: v if isinstance(v, int) else round(v, 3) for k, v in asdict(self).items()}


@dataclass
class SendReport:
    edition: date
    transport: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    #: Why the run stopped early (error storm, hourly cap, asked to stop), if it did.
    stopped: str | None = None
    #: Messages a crashed earlier run left unknown, found at the start of this one.
    unknown: list[str] = field(default_factory=list)
    stats: SendStats = field(default_factory=SendStats)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    @property
    def ok(self) -> bool:
        return not (self.counts.get("failed") or self.counts.get("rejected") or self.stopped)

    def to_dict(self) -> dict:
        return {
            "edition": self.edition.isoformat(),
            "transport": self.transport,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "stopped": self.stopped,
            "unknown": self.unknown,
            "stats": self.stats.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }
