"""The trending-papers page as text: a few header lines, then a title line and an abstract
line per paper (the bundled demo data set has this shape). The page lists its papers in
trending order: each paper's place on it is kept as its ``trending_rank``."""

from __future__ import annotations

import re

from ..models import Paper, paper_id
from . import ParseResult, RecordError

SOURCE = "sample"
_HEADER = re.compile(r"^\s*Get trending papers\b.*$", re.I)
_SUBSCRIBE_PREFIX = re.compile(r"^\s*Subscribe(?=\S)")
#: Titles are short; a line longer than this is an abstract.
MAX_TITLE_CHARS = 400


def looks_like_sample_page(text: str) -> bool:
    return any(_HEADER.match(line) for line in text.splitlines()[:5])


def parse_sample_page(text: str) -> ParseResult:
    """Pair title and abstract lines. A title with no abstract after it, or an abstract with
    no title before it, is reported by line number and skipped; pairing resumes after it."""
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not _HEADER.match(line)
    ]
    if lines:
        number, first = lines[0]
        lines[0] = (number, _SUBSCRIBE_PREFIX.sub("", first, count=1))

    pending_title: tuple[int, str] | None = None
    rank = 0
    for number, line in lines:
        is_title = len(line) <= MAX_TITLE_CHARS and pending_title is None
        if is_title:
            pending_title = (number, line)
            continue
        if pending_title is None:
            yield RecordError(f"line {number}", "abstract without a title before it; skipped")
            continue
        title_line, title = pending_title
        if len(line) <= MAX_TITLE_CHARS and _looks_like_title(line):
            yield RecordError(
                f"line {title_line}", f"title {title[:60]!r} has no abstract; skipped"
            )
            pending_title = (number, line)
            continue
        pending_title = None
        rank += 1
        yield Paper(
            id=paper_id(None, title),
            title=" ".join(title.split()),
            abstract=line,
            source=SOURCE,
            trending_rank=rank,
        )
    if pending_title is not None:
        title_line, title = pending_title
        yield RecordError(f"line {title_line}", f"title {title[:60]!r} has no abstract; skipped")


def _looks_like_title(line: str) -> bool:
    """A short line with no sentence end: the next title rather than a (short) abstract."""
    return not re.search(r"[.!?]\s+\S", line) and not line.endswith(".")
