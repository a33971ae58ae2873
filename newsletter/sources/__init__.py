"""Where papers come from. Each source module turns raw input into :class:`Paper` records
and :class:`RecordError` reports; :mod:`newsletter.store.ingest` stores them.

A remote source also has a :class:`Source` class whose ``fetch`` yields the same records,
plus a :class:`FetchFailure` for a request that failed after its retries: what was fetched
before it is kept, and the failure is reported apart from bad records. ``registry`` builds
the enabled sources from the settings.

May import the base modules (``models``, ``settings``, ``fetch``) only: the sources know
nothing of the store, nor of anything after it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..models import Paper


@dataclass(frozen=True)
class RecordError:
    """One record that could not be read, and where it was."""

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


ParseResult = Iterator[Paper | RecordError]
FetchResult = Iterator[Paper | RecordError | FetchFailure]

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
