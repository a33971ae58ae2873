"""What the pages of the web app (the public ones and the operator's) are made of: a page
is a template and its context; a notice says one thing, with at most one button."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: An archived email is the email's own HTML: its styles are inline (as every mail client
#: needs them), so it gets a policy that allows inline styles and nothing else.
ARCHIVE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-robots-tag": "noindex, nofollow",
}


@dataclass(frozen=True)
class Button:
    """A form with one button that POSTs ``fields`` (and the CSRF token) to ``action``."""

    label: str
    action: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    template: str
    context: dict[str, Any]
    status: int = 200


def notice(
    title: str,
    *paragraphs: str,
    status: int = 200,
    button: Button | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> Page:
    """A page that says one thing, with at most one button and a few links."""
    return Page(
        "web/notice.html",
        {"title": title, "paragraphs": paragraphs, "button": button, "links": links},
        status,
    )
