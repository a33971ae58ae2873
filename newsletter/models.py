"""The records that flow through the pipeline, and the rules that name them."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict
from urllib.parse import urlsplit


class Status(StrEnum):
    """A subscriber's lifecycle. Only ``active`` subscribers receive editions."""

    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


#: Statuses that mean "never send to this address again" (until an operator reactivates it).
SUPPRESSED = frozenset({Status.BOUNCED, Status.UNSUBSCRIBED})


@dataclass
class Paper:
    id: str
    title: str
    abstract: str
    source: str = ""
    authors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    url: str = ""
    published_at: str | None = None
    upvotes: int | None = None
    first_seen_at: str | None = None
    #: The paper's place (1 = first) on a trending page it was read from (the sample page
    #: lists its papers in trending order); None elsewhere.
    trending_rank: int | None = None
    #: What one source knows beyond the common fields: ``announce_type`` (arXiv RSS),
    #: ``num_comments`` and ``github_repo`` (Hugging Face), ...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Subscriber:
    id: int
    email: str
    status: Status
    timezone: str
    delivery_hour: int
    max_papers: int
    #: How many papers the "Trending today" section shows; None: the operator's default.
    trending_papers: int | None = None
    interests: str = ""
    categories: list[str] = field(default_factory=list)
    muted_terms: list[str] = field(default_factory=list)
    followed_authors: list[str] = field(default_factory=list)
    #: True: only papers in ``categories``; False: those categories are a boost.
    categories_only: bool = False
    #: ``daily``, or ``weekly`` on ``weekly_day`` (0 = Monday).
    frequency: str = "daily"
    weekly_day: int = 0
    #: No edition until this date (YYYY-MM-DD), inclusive.
    paused_until: str | None = None
    created_at: str = ""
    consent_at: str | None = None
    consent_source: str | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "email": self.email,
            "status": str(self.status),
            "interests": self.interests,
            "categories": self.categories,
            "muted_terms": self.muted_terms,
            "followed_authors": self.followed_authors,
            "categories_only": self.categories_only,
            "timezone": self.timezone,
            "hour": self.delivery_hour,
            "max_papers": self.max_papers,
            "trending_papers": self.trending_papers,
            "frequency": self.frequency,
            "weekly_day": self.weekly_day,
            "paused_until": self.paused_until,
            "created_at": self.created_at,
            "consent_at": self.consent_at,
            "consent_source": self.consent_source,
        }


#: The most a reader's profile holds, wherever it is written: the preferences form, the
#: console, a CSV import and the store itself refuse more. No researcher needs more, and
#: it bounds what one reader's profile can cost an edition.
MAX_INTERESTS_CHARS = 2000


@dataclass(frozen=True)
class ListLimit:
    """At most ``items`` entries in a profile list, each of at most ``chars`` characters."""

    label: str
    items: int
    chars: int


PROFILE_LIMITS = {
    "categories": ListLimit("arXiv categories", 20, 40),
    "muted_terms": ListLimit("muted terms", 50, 60),
    "followed_authors": ListLimit("followed authors", 50, 100),
}


def profile_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is more than the profile field ``name`` may hold, or None."""
    if name == "interests":
        too_long = len(value) > MAX_INTERESTS_CHARS
        return f"interests are limited to {MAX_INTERESTS_CHARS} characters" if too_long else None
    limit = PROFILE_LIMITS.get(name)
    if limit is None:
        return None
    if len(value) > limit.items:
        return f"at most {limit.items} {limit.label}, not {len(value)}"
    for item in value:
        if len(item) > limit.chars:
            return (
                f"{limit.label} are limited to {limit.chars} characters each:"
                f" {item[:20]!r}... has {len(item)}"
            )
    return None


class Section(StrEnum):
    """Where a pick stands in an email; the values are the keys of ``preview --format json``."""

    #: The reader's own papers (for a reader who gave no interests, the trending list's).
    PICKS = "papers"
    #: "Trending today": the day's top trending papers after the picks.
    TRENDING = "trending"


class PickRecord(TypedDict):
    """A pick as data: the console's preview prints it, the preferences page lists it (with
    the paper's link); the ledger records the same id, score and reason."""

    id: str
    title: str
    score: float
    reason: str


@dataclass(frozen=True)
class Pick:
    """A paper chosen for a subscriber: its score, and the reason the email shows."""

    paper: Paper
    score: float
    reason: str
    section: Section = Section.PICKS
    #: Chosen from the day's trending list because nothing suited the reader's profile
    #: (or they gave none), rather than for their interests.
    by_trend: bool = False

    def to_dict(self) -> PickRecord:
        return {
            "id": self.paper.id,
            "title": self.paper.title,
            "score": round(self.score, 4),
            "reason": self.reason,
        }


def in_section(picks: Iterable[Pick], section: Section) -> list[Pick]:
    """The picks of one section of an email, in their order."""
    return [pick for pick in picks if pick.section == section]


class DeliveryStatus(StrEnum):
    """Where one (edition, subscriber) message is; see :mod:`newsletter.sending.ledger`."""

    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    REJECTED = "rejected"
    SUPPRESSED = "suppressed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Delivery:
    """One row of the delivery ledger: the message of an edition to a subscriber.
    ``lease_owner`` is the process that last claimed it, which holds it until
    ``lease_expires_at`` while it is ``sending``."""

    id: int
    edition: str
    subscriber_id: int
    email: str
    status: DeliveryStatus
    message_id: str
    paper_ids: list[str]
    picks: list[dict]
    attempts: int
    send_count: int
    sent_at: str | None
    last_error: str | None
    claimed_at: str | None = None
    next_attempt_at: str | None = None
    lease_owner: str | None = None
    lease_expires_at: str | None = None


@dataclass(frozen=True)
class Shard:
    """One of ``count`` parts of the list, for sending an edition from several processes:
    the subscribers whose id is ``index`` modulo ``count``. An id never changes, so a
    subscriber stays in their shard from one run to the next, and ids are given in turn, so
    the shards are the same size. ``Shard()`` is the whole list."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"1/4"``: the second of four shards."""
        index, _, count = text.partition("/")
        try:
            return cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"{text!r} is not a shard: write INDEX/COUNT, e.g. 0/2") from None

    @property
    def whole(self) -> bool:
        return self.count == 1

    def __contains__(self, subscriber_id: int) -> bool:
        return subscriber_id % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: The shard that is the whole list.
WHOLE_LIST = Shard()


def utcnow() -> str:
    """Now, as the ISO-8601 UTC text every timestamp in the store uses (sortable as text)."""
    return to_utc_iso(datetime.now(UTC))


def to_utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


_NEW_ARXIV_ID = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_OLD_ARXIV_ID = re.compile(r"^([a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(v\d+)?$")
_ARXIV_PREFIX = re.compile(r"^(?:arxiv:|https?://(?:www\.)?arxiv\.org/(?:abs|pdf)/)", re.I)


def arxiv_id(raw: str) -> str | None:
    """The version-less arXiv id in ``raw`` (``2508.13426v2`` -> ``2508.13426``), or None."""
    text = _ARXIV_PREFIX.sub("", raw.strip()).removesuffix(".pdf")
    for pattern in (_NEW_ARXIV_ID, _OLD_ARXIV_ID):
        if match := pattern.match(text):
            return match.group(1)
    return None


#: Characters no link may hold: C0 and C1 controls, space and DEL. Browsers drop tabs and
#: newlines from a URL (``java\tscript:``), so a link holding one is refused, not cleaned.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")


def safe_url(value: str) -> str | None:
    """``value`` without the whitespace around it if it is an absolute ``http`` or ``https``
    URL with a host, else None. A paper's link goes into an ``href``: ``javascript:`` or
    ``data:`` there would run when the reader clicks the title."""
    url = value.strip()
    if _URL_FORBIDDEN.search(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # a malformed IPv6 host or port
        return None
    return url if parts.scheme in ("http", "https") and host else None


def paper_link(paper_id: str, url: str = "") -> str:
    """The link of a paper: the arXiv page of an arXiv id (built from the id, whatever a
    feed says), else ``url`` if it is safe (:func:`safe_url`), else ""."""
    if ident := arxiv_id(paper_id):
        return f"https://arxiv.org/abs/{ident}"
    return safe_url(url) or ""


def title_key(title: str) -> str:
    """A title reduced to lower-case ASCII words, so trivial variants compare equal."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return " ".join(re.findall(r"[a-z0-9]+", text))


def paper_id(raw_id: str | None, title: str) -> str:
    """The stable id of a paper: its arXiv id, else the given id, else a hash of its title."""
    if raw_id and (raw := str(raw_id).strip()):
        return arxiv_id(raw) or raw
    digest = hashlib.sha1(title_key(title).encode()).hexdigest()[:16]
    return f"title-{digest}"
