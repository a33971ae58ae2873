"""Where papers come from. Each source module turns raw input into :class:`Paper` records
and :class:`RecordError` reports; :mod:`newsletter.ingest` stores them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..models import Paper


@dataclass(frozen=True)
class RecordError:
    """One record that could not be read, and where it was."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


ParseResult = Iterator[Paper | RecordError]
