"""Render an edition for one subscriber: HTML (Jinja2, CSS inlined by premailer), a plain-text
part with the same content and links, and the headers a bulk sender needs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property
from pathlib import Path

import jinja2
import premailer

from .models import Paper, Subscriber, arxiv_id
from .ranking import Pick
from .settings import Settings
from .tokens import LinkSigner

log = logging.getLogger(__name__)

ABSTRACT_CHARS = 600
MAX_AUTHORS = 4
SUBJECT_CHARS = 110


def templates_dir() -> Path:
    """``templates/`` inside the installed package (a wheel), else the source tree's."""
    installed = Path(__file__).parent / "templates"
    return installed if installed.is_dir() else Path(__file__).parent.parent / "templates"


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def trim_words(text: str, limit: int) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:.-")
    return cut + "…"


def short_authors(authors: list[str]) -> str:
    if len(authors) <= MAX_AUTHORS:
        return ", ".join(authors)
    return ", ".join(authors[: MAX_AUTHORS - 1]) + f" et al. ({len(authors)} authors)"


def paper_url(paper: Paper) -> str:
    if paper.url:
        return paper.url
    if ident := arxiv_id(paper.id):
        return f"https://arxiv.org/abs/{ident}"
    return ""


def message_id(edition: date, subscriber_id: int, send_count: int, domain: str) -> str:
    """Deterministic per (edition, subscriber, send): a retry of the same send has the same
    Message-ID, a forced resend a new one."""
    digest = hashlib.sha256(f"{edition}:{subscriber_id}:{send_count}".encode()).hexdigest()[:20]
    return f"<{edition.isoformat()}.{digest}@{domain}>"


@dataclass(frozen=True)
class RenderedEdition:
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    preferences_url: str


class Renderer:
    """Renders editions; one per run, so templates and CSS are read once."""

    def __init__(self, settings: Settings, signer: LinkSigner):
        self.settings = settings
        self.signer = signer
        self.env = template_environment()

    @cached_property
    def css(self) -> str:
        return (templates_dir() / "email" / "email.css").read_text(encoding="utf-8")

    @cached_property
    def brand(self) -> str:
        return parseaddr(self.settings.from_address)[0] or "Daily Papers"

    def link(self, purpose: str, subscriber: Subscriber) -> str:
        token = self.signer.make(purpose, subscriber.id, subscriber.email)
        return f"{self.settings.base_url.rstrip('/')}/{purpose}/{token}"

    def subject(self, edition: date, picks: list[Pick]) -> str:
        label = f"{edition:%b} {edition.day}"
        if not picks:
            return f"{self.brand} · {label}"
        top = " ".join(picks[0].paper.title.split())
        more = f" (+{len(picks) - 1} more)" if len(picks) > 1 else ""
        return trim_words(f"{label}: {top}", SUBJECT_CHARS - len(more)) + more

    def render(self, subscriber: Subscriber, picks: list[Pick], edition: date) -> RenderedEdition:
        papers = [
            {
                "title": " ".join(pick.paper.title.split()),
                "url": paper_url(pick.paper),
                "authors": short_authors(pick.paper.authors),
                "labels": " · ".join(pick.paper.categories),
                "abstract": trim_words(pick.paper.abstract, ABSTRACT_CHARS),
                "reason": pick.reason,
            }
            for pick in picks
        ]
        subject = self.subject(edition, picks)
        context = {
            "subject": subject,
            "brand": self.brand,
            "edition_label": f"{edition:%A}, {edition:%B} {edition.day}, {edition.year}",
            "preheader": "; ".join(p["title"] for p in papers[:3]),
            "interests": subscriber.interests or "(none yet)",
            "papers": papers,
            "email": subscriber.email,
            "preferences_url": self.link("preferences", subscriber),
            "unsubscribe_url": self.link("unsubscribe", subscriber),
            "sender_identity": self.settings.sender_identity,
            "css": self.css,
        }
        html = self.env.get_template("email/edition.html").render(context)
        html = premailer.transform(
            html, keep_style_tags=True, strip_important=False, cssutils_logging_level=logging.ERROR
        )
        text = self.env.get_template("email/edition.txt").render(context)
        return RenderedEdition(
            subject, html, text, context["unsubscribe_url"], context["preferences_url"]
        )

    def message(
        self, subscriber: Subscriber, picks: list[Pick], edition: date, msg_id: str
    ) -> EmailMessage:
        rendered = self.render(subscriber, picks, edition)
        message = EmailMessage()
        message["Subject"] = rendered.subject
        message["From"] = self.settings.from_address
        message["To"] = Address(addr_spec=subscriber.email)
        if self.settings.reply_to:
            message["Reply-To"] = self.settings.reply_to
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = msg_id
        domain = self.settings.sender_domain
        message["List-Id"] = formataddr((self.brand, f"daily-papers.{domain}"))
        mailto = f"mailto:{self.settings.sender_email}?subject=unsubscribe"
        message["List-Unsubscribe"] = f"<{rendered.unsubscribe_url}>, <{mailto}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message["X-Newsletter-Edition"] = edition.isoformat()
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message
