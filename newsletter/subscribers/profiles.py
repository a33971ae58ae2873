"""Subscriber management: validation, adding, updating, CSV import and export.

The CLI and the web app both go through these functions, so an address or a profile is
checked the same way wherever it comes from."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from ..mail.text import one_line
from ..models import Status, Subscriber, arxiv_id, profile_problem
from ..settings import MAX_TIMEZONE_CHARS, Settings, known_timezone
from ..store import DuplicateSubscriber, Store

MAX_PAPERS_LIMIT = 50
_CATEGORY = re.compile(r"^[a-z\-]+(\.[A-Za-z\-]+)?$")
CSV_COLUMNS = [
    "email",
    "interests",
    "categories",
    "timezone",
    "hour",
    "max_papers",
    "muted_terms",
    "status",
]


#: A cell starting with one of these is a formula to a spreadsheet (``=HYPERLINK(...)``): the
#: export writes it after a ``'``, which spreadsheets read as "text", and so also a cell
#: that starts with ``'`` itself, so that the import can take exactly one off again.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralize_cell(value: str) -> str:
    """``value`` as the export writes it: after a ``'`` if a spreadsheet could run it."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def restore_cell(value: str) -> str:
    """The value of an exported cell: :func:`neutralize_cell` undone."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS):
        return value[1:]
    return value


class InvalidSubscriber(ValueError):
    """A field of a subscriber is not acceptable; the message says which and why."""


def normalize_email(address: str) -> str:
    """The address in canonical form (syntax only: no DNS lookup), or InvalidSubscriber."""
    try:
        return validate_email(address.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidSubscriber(f"invalid email address {address!r}: {exc}") from exc


def _bounded(name: str, items: list[str]) -> list[str]:
    """``items``, if the profile field ``name`` may hold them (see models.PROFILE_LIMITS)."""
    if problem := profile_problem(name, items):
        raise InvalidSubscriber(problem)
    return items


def parse_categories(value: str | Iterable[str] | None) -> list[str]:
    """``cs.LG,math.AP`` (or a list) as a list of arXiv category names."""
    if value is None:
        return []
    items = (
        value.replace(";", ",").replace(" ", ",").split(",") if isinstance(value, str) else value
    )
    categories = _bounded("categories", list(dict.fromkeys(i.strip() for i in items if i.strip())))
    for item in categories:
        if not _CATEGORY.match(item):
            raise InvalidSubscriber(f"{item!r} is not an arXiv category (like cs.LG or math.AP)")
    return categories


def check_timezone(name: str) -> str:
    if not known_timezone(name):
        shown = name if len(name) <= MAX_TIMEZONE_CHARS else name[:MAX_TIMEZONE_CHARS] + "..."
        raise InvalidSubscriber(f"unknown timezone {shown!r} (use an IANA name like Europe/Berlin)")
    return name


def check_hour(hour: Any) -> int:
    try:
        value = int(hour)
    except (TypeError, ValueError) as exc:
        raise InvalidSubscriber(f"delivery hour must be a whole number 0-23, not {hour!r}") from exc
    if not 0 <= value <= 23:
        raise InvalidSubscriber(f"delivery hour must be 0-23, not {value}")
    return value


def check_max_papers(count: Any) -> int:
    try:
        value = int(count)
    except (TypeError, ValueError) as exc:
        raise InvalidSubscriber(f"papers per email must be a whole number, not {count!r}") from exc
    if not 1 <= value <= MAX_PAPERS_LIMIT:
        raise InvalidSubscriber(f"papers per email must be 1-{MAX_PAPERS_LIMIT}, not {value}")
    return value


MAX_TRENDING_PAPERS = 10


def check_trending_papers(count: Any) -> int:
    """The size of a reader's "Trending today" section: 0 (none) to 10."""
    try:
        value = int(count)
    except (TypeError, ValueError):
        raise InvalidSubscriber(f"trending papers must be a number, not {count!r}") from None
    if not 0 <= value <= MAX_TRENDING_PAPERS:
        raise InvalidSubscriber(f"trending papers must be 0-{MAX_TRENDING_PAPERS}, not {value}")
    return value


def check_status(value: str | Status) -> Status:
    try:
        return Status(str(value).strip().lower())
    except ValueError as exc:
        known = ", ".join(s.value for s in Status)
        raise InvalidSubscriber(f"unknown status {value!r} (one of {known})") from exc


def _split(value: str | Iterable[str] | None) -> list[str]:
    items = (value or "").split(",") if isinstance(value, str | None) else value
    return [t.strip() for t in items if t.strip()]


def parse_terms(value: str | Iterable[str] | None) -> list[str]:
    """Muted terms from ``survey, benchmark`` or a list."""
    return _bounded("muted_terms", _split(value))


def parse_authors(value: str | Iterable[str] | None) -> list[str]:
    """Followed authors from ``Ada Lovelace, Alan Turing`` or a list."""
    return _bounded("followed_authors", _split(value))


FREQUENCIES = ("daily", "weekly")


def check_frequency(value: str) -> str:
    value = str(value).strip().lower()
    if value not in FREQUENCIES:
        raise InvalidSubscriber(f"frequency must be daily or weekly, not {value!r}")
    return value


def check_weekday(value: Any) -> int:
    """0 = Monday ... 6 = Sunday."""
    try:
        day = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidSubscriber(
            f"weekly day must be 0 (Monday) to 6 (Sunday), not {value!r}"
        ) from exc
    if not 0 <= day <= 6:
        raise InvalidSubscriber(f"weekly day must be 0 (Monday) to 6 (Sunday), not {day}")
    return day


def check_pause(value: str | date | None) -> str | None:
    """A pause-until date (YYYY-MM-DD) or ``""``/None for no pause."""
    if value in (None, ""):
        return None
    try:
        return (
            value if isinstance(value, date) else date.fromisoformat(str(value).strip())
        ).isoformat()
    except ValueError as exc:
        raise InvalidSubscriber(f"pause until must be a date YYYY-MM-DD, not {value!r}") from exc


def check_interests(text: str | None) -> str:
    text = one_line(text or "")
    if problem := profile_problem("interests", text):
        raise InvalidSubscriber(problem)
    return text


def add_subscriber(
    store: Store,
    settings: Settings,
    email: str,
    *,
    interests: str = "",
    categories: str | Iterable[str] | None = None,
    timezone: str | None = None,
    hour: int | str | None = None,
    max_papers: int | str | None = None,
    muted_terms: str | Iterable[str] | None = None,
    status: Status = Status.ACTIVE,
    consent_source: str = "console",
    consent_ip: str | None = None,
) -> Subscriber:
    """Validate and add a subscriber. From the console they are active at once (the operator
    vouches for their consent); the web sign-up passes ``Status.PENDING``."""
    return store.add_subscriber(
        normalize_email(email),
        status=status,
        timezone=check_timezone(timezone or settings.timezone),
        delivery_hour=check_hour(settings.delivery_hour if hour in (None, "") else hour),
        max_papers=check_max_papers(
            settings.papers_per_email if max_papers in (None, "") else max_papers
        ),
        interests=check_interests(interests),
        categories=parse_categories(categories),
        muted_terms=parse_terms(muted_terms),
        consent_source=consent_source,
        consent_ip=consent_ip,
    )


def update_subscriber(store: Store, email: str, **changes: Any) -> Subscriber:
    """Validate and apply the given changes; ``None`` means "leave as it is", except for
    ``paused_until`` where it ends a pause."""
    checks: dict[str, Callable[[Any], object]] = {
        "interests": check_interests,
        "categories": parse_categories,
        "muted_terms": parse_terms,
        "followed_authors": parse_authors,
        "categories_only": bool,
        "frequency": check_frequency,
        "weekly_day": check_weekday,
        "timezone": check_timezone,
        "delivery_hour": check_hour,
        "max_papers": check_max_papers,
        "trending_papers": check_trending_papers,
        "status": check_status,
    }
    valid = {k: checks[k](v) for k, v in changes.items() if v is not None and k in checks}
    if "paused_until" in changes:  # None clears the pause
        valid["paused_until"] = check_pause(changes["paused_until"])
    unknown = set(changes) - set(checks) - {"paused_until"}
    if unknown:
        raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
    subscriber = store.get_subscriber(email.strip())
    return store.update_subscriber(subscriber.id, **valid) if valid else subscriber


def record_feedback(store: Store, email: str, paper_id: str, signal: int) -> Subscriber:
    """ "More like this" (+1), "less like this" (-1) or neither (0) for a paper, as the
    email's links record it; the next edition's ranking uses it."""
    subscriber = store.get_subscriber(email.strip())
    paper = store.get_paper(paper_id.strip()) or store.get_paper(arxiv_id(paper_id) or "")
    if paper is None:
        raise InvalidSubscriber(f"no paper {paper_id!r} in the database")
    store.set_feedback(subscriber.id, paper.id, signal)
    return subscriber


@dataclass
class ImportReport:
    added: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def import_csv(store: Store, settings: Settings, path: Path) -> ImportReport:
    """Add the subscribers of a CSV file (header row; ``email,interests`` and optionally
    ``categories,timezone,hour,max_papers,muted_terms,status``, as :func:`export_csv` writes
    them: an exported unsubscribed address comes back unsubscribed). A bad row is reported
    by line and skipped."""
    report = ImportReport()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSubscriber(f"cannot read {path}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = {c.strip().lower() for c in reader.fieldnames or []}
    if "email" not in columns:
        raise InvalidSubscriber(f"{path}: the first row must be a header with an 'email' column")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a field beyond csv's limit (128 KiB): that row alone
            report.skipped += 1
            report.errors.append(f"{path}: line {reader.reader.line_num}: {exc}")
            continue
        line = reader.line_num
        row = {
            (k or "").strip().lower(): restore_cell((v or "").strip()) for k, v in row.items() if k
        }
        try:
            add_subscriber(
                store,
                settings,
                row.get("email", ""),
                interests=row.get("interests", ""),
                categories=row.get("categories"),
                timezone=row.get("timezone") or None,
                hour=row.get("hour") or None,
                max_papers=row.get("max_papers") or None,
                muted_terms=row.get("muted_terms"),
                status=check_status(row.get("status") or Status.ACTIVE),
                consent_source=f"import:{path.name}",
            )
            report.added += 1
        except (InvalidSubscriber, DuplicateSubscriber) as exc:
            report.skipped += 1
            report.errors.append(f"{path}: line {line}: {exc}")
    store.log_event(
        "subscribers.import", file=str(path), added=report.added, skipped=report.skipped
    )
    return report


def export_csv(subscribers: Iterable[Subscriber]) -> str:
    """Subscribers as CSV, in the columns :func:`import_csv` reads back. A cell that a
    spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a carriage
    return; a web sign-up's interests are anyone's text) is written after a ``'``, which
    the import takes off again."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in subscribers:
        cells = [
            s.email,
            s.interests,
            ",".join(s.categories),
            s.timezone,
            str(s.delivery_hour),
            str(s.max_papers),
            ",".join(s.muted_terms),
            str(s.status),
        ]
        writer.writerow([neutralize_cell(cell) for cell in cells])
    return out.getvalue()
