"""What the rest of the package may ask of a database: :class:`Store` and, for the delivery
ledger's table, :class:`DeliveryStore`. Callers depend on these protocols, never on an
implementation; :func:`newsletter.store.open_store` gives them one (SQLite today, in
:mod:`newsletter.store.database`).

Every statement of SQL lives behind these methods, inside ``newsletter.store``. The rules
stay with their owners: when a message may be claimed again, how long to wait after a
failure, how many requests a rate limit lets through are the callers' to decide, and a
store only carries them out, atomically. The ledger's methods take and return several rows
at once and write a lease (who holds a message, and until when), so that a store shared by
several hosts, where a lock file cannot say who is alive, can claim batches with
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` and ``SELECT ... FOR UPDATE``.

Timestamps are ISO-8601 UTC text (:func:`newsletter.models.to_utc_iso`), which sorts as time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, Self

from ..models import Delivery, DeliveryStatus, Paper, Shard, Status, Subscriber

SaveOutcome = Literal["new", "updated", "unchanged"]


class SubscriberNotFound(LookupError):
    pass


class DuplicateSubscriber(ValueError):
    pass


@dataclass(frozen=True)
class Lease:
    """Who holds the messages a claim takes (a process, e.g. ``host:pid``), and until when
    (ISO-8601 UTC): past that moment a message still ``sending`` was left by a holder that
    died."""

    owner: str
    expires_at: str


@dataclass(frozen=True)
class NewClaim:
    """The first claim of an (edition, subscriber) message: its row as it is inserted,
    ``sending``, at its first attempt and send. ``planned_at`` is when its papers were chosen
    (the row's ``created_at``)."""

    edition: str
    subscriber_id: int
    email: str
    message_id: str
    paper_ids: list[str]
    picks: list[dict]
    planned_at: str


@dataclass(frozen=True)
class Reclaim:
    """Another claim of a message whose row exists (row ``delivery_id``): back to
    ``sending`` with one more attempt, under ``message_id`` and ``send_count``; its papers
    stay the ones first chosen."""

    delivery_id: int
    email: str
    message_id: str
    send_count: int


@dataclass(frozen=True)
class Answer:
    """What the transport answered for a claimed message, as the ledger records it."""

    delivery_id: int
    status: DeliveryStatus
    sent_at: str | None
    transport_id: str | None
    error: str | None
    next_attempt_at: str | None


class ClaimedPapers(NamedTuple):
    """The papers of one message, for a subscriber's history: ``planned_at`` is when they
    were chosen."""

    subscriber_id: int
    edition: str
    paper_ids: list[str]
    planned_at: str


class Holder(NamedTuple):
    """A sender holding messages of an edition (``sending``): its name in their leases, how
    many, and when the last of its leases runs out (ISO-8601 UTC)."""

    owner: str | None
    messages: int
    until: str | None


class TrendingRow(NamedTuple):
    """A paper's trending signals: its upvotes, its place on a trending page, its times."""

    id: str
    upvotes: int | None
    trending_rank: int | None
    first_seen_at: str
    published_at: str | None


class DeliveryStore(Protocol):
    """The delivery ledger's rows, one per (edition, subscriber). Only
    :class:`newsletter.sending.ledger.Ledger` calls the writing methods, inside
    :meth:`Store.transaction`."""

    #: How many messages a sender claims in one transaction: one in SQLite, whose
    #: transaction holds the whole database (so a claim waits for no more than one message
    #: to be made), a batch in PostgreSQL, whose claims lock only their rows.
    claim_batch: int
    #: Whether several senders of one list claim from these rows at once (PostgreSQL).
    #: Then a sender makes each email after claiming it: one made before might be claimed
    #: first by another sender, and made for nothing. A single sender (SQLite's, per shard)
    #: makes each batch first, so that the claim comes right before it goes.
    concurrent_claims: bool

    def get(self, edition: str, subscriber_id: int) -> Delivery | None: ...

    def with_message_id(self, edition: str, message_id: str) -> Delivery | None:
        """The edition's row whose current Message-ID is ``message_id``, if any."""
        ...

    def for_edition(self, edition: str) -> list[Delivery]: ...

    def latest(self, subscriber_id: int, status: DeliveryStatus, limit: int) -> list[Delivery]:
        """The subscriber's last ``limit`` rows in ``status``, newest edition first."""
        ...

    def recent_editions(self, limit: int) -> list[str]:
        """The last ``limit`` editions that have rows, newest first."""
        ...

    def counts(self, edition: str) -> dict[str, int]:
        """{status: rows} of an edition."""
        ...

    def holders(self, edition: str) -> list[Holder]:
        """The senders holding the edition's rows still ``sending``, by name."""
        ...

    def with_status(self, edition: str, status: DeliveryStatus) -> list[Delivery]:
        """The edition's rows in ``status``, the soonest next try first."""
        ...

    def claimed_since(
        self, since: str, statuses: Collection[DeliveryStatus], other_than: str
    ) -> Iterator[ClaimedPapers]:
        """The papers of the rows in ``statuses`` claimed from ``since`` on, in any edition
        but ``other_than``."""
        ...

    def count_sent_since(self, moment: str, shard: Shard) -> int:
        """Rows of ``shard`` sent from ``moment`` on."""
        ...

    def lock_next(
        self,
        edition: str,
        subscriber_ids: Sequence[int],
        limit: int,
        held: Collection[DeliveryStatus],
        now: str,
    ) -> list[int]:
        """The first ``limit`` of ``subscriber_ids`` (in their order) whose row of the
        edition, if any, is not in a ``held`` status (``sending`` counts only while its lease
        runs: a holder whose lease ran out is dead) and that no other sender is claiming at
        this moment: they are this transaction's until it ends."""
        ...

    def insert_claims(self, claims: Sequence[NewClaim], lease: Lease, now: str) -> list[Delivery]:
        """Insert a ``sending`` row for each claim whose (edition, subscriber) has none yet;
        the rows inserted. A claim that meets a row changes nothing."""
        ...

    def locked(self, edition: str, subscriber_ids: Collection[int]) -> dict[int, Delivery]:
        """The edition's rows of these subscribers, held until the transaction ends."""
        ...

    def reclaim(self, claims: Sequence[Reclaim], lease: Lease, now: str) -> list[Delivery]:
        """Take these existing rows for sending again; the rows as they now are."""
        ...

    def renew(self, delivery_ids: Sequence[int], lease: Lease, now: str) -> list[int]:
        """Extend to ``lease.expires_at`` the lease of these rows that are still ``sending``
        under ``lease.owner``; the ids renewed (a row missing from them was taken by another
        sender after its lease ran out, or answered)."""
        ...

    def release(self, delivery_ids: Sequence[int], now: str) -> None:
        """Give back these ``sending`` rows, never handed over: a first claim's row goes, a
        claim again returns to ``failed``, due at ``now``, its attempt not counted."""
        ...

    def mark_in_flight_unknown(self, shard: Shard, now: str) -> list[Delivery]:
        """Set every row of ``shard`` still ``sending`` to ``unknown``; the rows as they were."""
        ...

    def record(self, answers: Sequence[Answer], now: str) -> None: ...

    def suppress(
        self,
        claim: NewClaim,
        reason: str,
        now: str,
        unless: Collection[DeliveryStatus],
    ) -> None:
        """Write the message down as ``suppressed`` with ``reason``, inserting its row if it
        has none, unless its row is in one of the statuses ``unless``."""
        ...

    def rekey_paper(self, old: str, new: str) -> None:
        """The paper ``old`` is now known as ``new``: rename it in the rows that hold it."""
        ...


class Store(Protocol):
    """All reads and writes of the database. Used as a context manager, it closes on exit."""

    #: The delivery ledger's table.
    deliveries: DeliveryStore

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction, taken at once so that concurrent writers queue; inside
        another one it is part of that one."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside a transaction: if the block raises, only what it wrote is undone."""
        ...

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    # -- papers ---------------------------------------------------------------------------------

    def save_paper(self, paper: Paper) -> SaveOutcome:
        """Insert a paper, or merge it into the row that has its id (or, without a real id,
        its title)."""
        ...

    def get_paper(self, paper_id: str) -> Paper | None: ...

    def papers_by_ids(self, ids: Iterable[str]) -> list[Paper]:
        """Papers in the order of ``ids``; ids not in the store are left out."""
        ...

    def papers_seen_between(self, start: str, end: str) -> list[Paper]:
        """Papers first seen in ``[start, end)``, oldest first."""
        ...

    def recent_papers(self, limit: int) -> list[Paper]: ...

    def count(self, table: str) -> int:
        """Rows of a table (``papers``, ``subscribers``, ``paper_embeddings``, ...)."""
        ...

    # -- subscribers ----------------------------------------------------------------------------

    def add_subscriber(
        self,
        email: str,
        *,
        status: Status,
        timezone: str,
        delivery_hour: int,
        max_papers: int,
        interests: str = "",
        categories: list[str] | None = None,
        muted_terms: list[str] | None = None,
        consent_source: str,
        consent_ip: str | None = None,
    ) -> Subscriber:
        """Raises :class:`DuplicateSubscriber` for an address already on the list."""
        ...

    def get_subscriber(self, key: int | str) -> Subscriber:
        """By id or by email address (case-insensitive); raises :class:`SubscriberNotFound`."""
        ...

    def list_subscribers(self, status: Status | None = None) -> list[Subscriber]: ...

    def count_subscribers(self, status: Status) -> int: ...

    def update_subscriber(self, subscriber_id: int, **changes: Any) -> Subscriber:
        """Change subscriber and profile fields; status changes are logged as events."""
        ...

    def remove_subscriber(self, subscriber_id: int) -> None:
        """Forget a subscriber entirely: profile, feedback and delivery history go too."""
        ...

    # -- feedback -------------------------------------------------------------------------------

    def set_feedback(self, subscriber_id: int, paper_id: str, signal: int) -> None: ...

    def feedback(
        self, subscriber_ids: Iterable[int] | None = None
    ) -> dict[int, dict[str, int]]: ...

    # -- embeddings (the semantic extra) --------------------------------------------------------

    def embeddings(
        self, table: str, key: str, model: str, keys: Iterable[str | int]
    ) -> dict[str | int, tuple[str, bytes]]: ...

    def papers_without_embedding(self, model: str, limit: int) -> list[Paper]: ...

    def recent_paper_embeddings(self, model: str, limit: int) -> list[bytes]: ...

    def save_embeddings(
        self, table: str, key: str, model: str, rows: Iterable[tuple[str | int, str, bytes]]
    ) -> None: ...

    # -- events ---------------------------------------------------------------------------------

    def log_event(
        self, kind: str, subscriber_id: int | None = None, edition: str | None = None, **detail: Any
    ) -> None: ...

    def has_event(self, kind: str, subscriber_id: int, edition: str) -> bool: ...

    def has_subscriber_event(
        self, subscriber_id: int, kinds: Iterable[str], **detail: Any
    ) -> bool: ...

    def count_events_since_active(self, subscriber_id: int, kind: str, since: str) -> int: ...

    def events(
        self, kind: str | None = None, limit: int = 100, edition: str | None = None
    ) -> list[dict]:
        """The newest ``limit`` events (of ``kind``, of ``edition``), newest first."""
        ...

    def event_counts_by_edition(
        self, kinds: Collection[str], editions: Collection[str]
    ) -> dict[str, dict[str, int]]:
        """{edition: {kind: subscribers}} with an event of each of ``kinds``, per edition."""
        ...

    # -- mail read from the bounce mailbox ------------------------------------------------------

    def record_mail(self, message_id: str, kind: str, email: str | None) -> bool:
        """Note a message of the bounce mailbox as read; False if it was already."""
        ...

    # -- trending -------------------------------------------------------------------------------

    def trending_signals(self, start: str, end: str) -> list[TrendingRow]:
        """The trending signals of the papers first seen in ``[start, end)`` (ISO-8601 UTC)."""
        ...

    # -- rate limits ----------------------------------------------------------------------------

    def take_rate_limit_slot(self, key: str, limit: int, window_start: float, now: float) -> bool:
        """Count a request for ``key`` at ``now`` (Unix time) unless ``key`` already has
        ``limit`` requests after ``window_start``; whether it was counted. Requests from
        before the window are forgotten."""
        ...

    def give_back_rate_limit_slot(self, key: str, at: float) -> None:
        """Forget the request counted for ``key`` at ``at`` by :meth:`take_rate_limit_slot`."""
        ...

    # -- dashboard counts (newsletter.store.dashboard) ------------------------------------------

    def events_per_day(
        self, kinds: Collection[str], since: str, detail_key: str | None = None
    ) -> list[tuple[str, str, str | None, int]]:
        """(UTC day, kind, detail field ``detail_key`` as text or None, events) for the
        events of ``kinds`` from ``since`` on, oldest day first."""
        ...

    def count_events_since(self, kinds: Collection[str], since: str) -> dict[str, int]: ...

    def deliveries_per_edition(self, since_edition: str) -> dict[str, dict[str, int]]:
        """{edition: {status: rows}} of the editions from ``since_edition`` on."""
        ...

    def deliveries_by_status(self) -> dict[str, int]: ...

    def subscribers_by_status(self) -> dict[str, int]: ...

    def search_subscribers(self, text: str, limit: int) -> list[int]:
        """Ids of the first ``limit`` subscribers whose address contains ``text``."""
        ...

    def subscriber_events(self, subscriber_id: int, limit: int) -> list[dict[str, Any]]:
        """The subscriber's newest events: {at, kind, edition, detail (JSON text)}."""
        ...
