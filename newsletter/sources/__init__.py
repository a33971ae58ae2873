"""Where papers come from. Each source module turns raw input into :class:`Paper` records
and :class:`RecordError` reports; :mod:`newsletter.store.ingest` stores them. The helpers here
check the values every format shares (counts, times), so that a hostile value costs its
record and never more; links are checked by :func:`newsletter.models.paper_link`.

A remote source also has a :class:`Source` class whose ``fetch`` yields the same records,
plus a :class:`FetchFailure` for a request that failed after its retries: what was fetched
before it is kept, and the failure is reported apart from bad records. ``registry`` builds
the enabled sources from the settings.

May import the base modules (``models``, ``settings``, ``fetch``) only: the sources know
nothing of the store, nor of anything after it."""

from __future__ import annotations

import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ..models import Paper, to_utc_iso

#: What a hostile value can raise while one record is read (nesting too deep for the JSON
#: parser, an integer of more than 4,300 digits, a time outside Python's range): the record
#: is reported and skipped.
RECORD_FAILURES = (ValueError, TypeError, OverflowError, RecursionError)
#: The largest count (upvotes, comments) taken; larger ones are refused, not clamped.
MAX_COUNT = 10**9
#: Publication times are refused before arXiv's first year, and more than this far ahead of
#: the clock (time zones and clock skew aside, a future time is wrong, and would carry the
#: newest-paper mark past papers not yet fetched).
EARLIEST_TIME = datetime(1991, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=2)


@dataclass(frozen=True)
class RecordError:
    """One record that could not be read, and where it was."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class RecordWarning:
    """One record kept without a value that was refused (a link that is not http or https)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class FetchFailure:
    """A request that failed for good (after retries): the source's papers behind it are
    missing from this run."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


ParseResult = Iterator[Paper | RecordError | RecordWarning]
FetchResult = Iterator[Paper | RecordError | RecordWarning | FetchFailure]


def shown(value: Any) -> str:
    """``value`` for an error message, shortened: a hostile value is not copied whole."""
    return reprlib.repr(value)


def json_failure(exc: Exception) -> str:
    """Why ``json.loads`` raised other than JSONDecodeError: nesting too deep for the
    parser (RecursionError), or an integer of more than 4,300 digits (ValueError)."""
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def count(value: Any, name: str) -> int | None:
    """A count (upvotes, comments) from a JSON value: an integer from 0 to
    :data:`MAX_COUNT`, or None. ValueError says what is wrong."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {shown(value)}")
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be at most {MAX_COUNT:,}, got {shown(value)}")
    return value


def publication_time(moment: datetime, name: str, now: datetime | None = None) -> str:
    """``moment`` as ISO-8601 UTC text. ValueError refuses a time that has no UTC form
    (``0001-01-01T00:00:00+05:00``), or one before 1991 or more than two days from now."""
    try:
        text = to_utc_iso(moment)
    except OverflowError:
        raise ValueError(f"{name} is out of range: {shown(moment.isoformat())}") from None
    if text < to_utc_iso(EARLIEST_TIME):
        raise ValueError(f"{name} is before {EARLIEST_TIME.year}: {text}")
    if text > to_utc_iso((now or datetime.now(UTC)) + FUTURE_SLACK):
        raise ValueError(f"{name} is in the future: {text}")
    return text


if TYPE_CHECKING:
    import httpx


class Source(Protocol):
    """A remote source of papers."""

    #: Name in settings, on the command line and in reports (``arxiv``, ``hf-daily``, ...).
    name: str

    @property
    def cursor(self) -> str:
        """What the "newest paper seen" mark is kept under: the source and its query, so a
        one-off ingest of other categories does not move the daily run's mark."""
        ...

    def fetch(self, client: httpx.Client, since: str | None) -> FetchResult:
        """Papers published since ``since`` (ISO-8601 UTC; None: whatever the source has
        now). Sources without paging may ignore it: the store merges what it has seen."""
        ...
