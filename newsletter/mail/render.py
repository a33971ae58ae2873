"""Render an edition for one subscriber: an HTML part (Jinja2, the stylesheet inlined by
premailer), a plain-text part with the same content and links, and the headers a bulk
sender needs.

Inlining is paid once per renderer (one per run), not once per email: premailer inlines the
stylesheet into the HTML *template*, with its Jinja tags hidden from the HTML parser, and each
email is then one Jinja render of that inlined template. Premailer never sees a subscriber's
data, and data never becomes template source: a paper titled ``{{ 7*7 }}`` is text, escaped
like any other. What a paper shows (title and abstract cleaned of TeX, trimmed) is also made
once per renderer; only the reason and the links are made per subscriber, and each token
of an email (unsubscribe, preferences, feedback) is signed once: the feedback links of all
its cards share one token, with the paper and the signal in the query.

The message is then composed field by field, with the headers of the run parsed and folded
once, and sealed with its Message-ID: its bytes are laid out then, once, in the sender's
thread, while the previous email is on the wire (:meth:`Renderer.compose`,
:meth:`Renderer.seal`).
"""

from __future__ import annotations

import binascii
import logging
import re
import secrets
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import SMTP, Policy
from email.policy import default as default_policy
from email.utils import format_datetime, formataddr
from functools import cached_property
from pathlib import Path
from urllib.parse import urlencode

import jinja2
import premailer

from ..models import Paper, Pick, Section, Subscriber, in_section, paper_link
from ..settings import Settings
from ..tokens import LinkSigner, verp_address
from ..transports import OutgoingEmail
from .dkim import DkimSigner
from .text import display_text, one_line

HTML_TEMPLATE = "email/edition.html"
TEXT_TEMPLATE = "email/edition.txt"
STYLESHEET = "email/email.css"

# Every field shown is bounded, so that 25 papers stay well under Gmail's clipping size
# (about 102 KB of HTML, past which it hides the rest, the unsubscribe link with it).
ABSTRACT_CHARS = 600
TITLE_CHARS = 250
AUTHORS_CHARS = 160
MAX_AUTHORS = 4
MAX_CATEGORIES = 4
REASON_CHARS = 160
INTERESTS_CHARS = 200
TRENDING_NOTE = "The top of today's trending list, beyond your own picks."
SUBJECT_CHARS = 110
PREHEADER_CHARS = 140
#: Line width of the plain-text part.
TEXT_WIDTH = 76

#: How a card names the source of a paper; other sources (a file, the sample) go unnamed.
SOURCE_NAMES = {"arxiv": "arXiv", "arxiv-rss": "arXiv", "hf-daily": "Hugging Face"}
#: The ``signal`` of a feedback link, and what it records: "more like this" or "less".
FEEDBACK_SIGNALS = {"more": 1, "less": -1}


def templates_dir() -> Path:
    """``templates/`` inside the installed package (a wheel), else the source tree's."""
    installed = Path(__file__).parent.parent / "templates"
    return installed if installed.is_dir() else Path(__file__).parent.parent.parent / "templates"


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def inline_css(html: str, css: str) -> str:
    """``html`` with the rules of ``css`` inlined into style attributes; the rules that
    cannot be inlined (``@media``) go into a ``<style>`` block in the head."""
    return premailer.transform(
        html, css_text=css, allow_network=False, cssutils_logging_level=logging.CRITICAL
    )


_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_MARKER = "jinja-tag-"
_HIDDEN_TAG = re.compile(rf"<!--{_MARKER}(\d+)x-->|{_MARKER}(\d+)x")


def inline_template(source: str, css: str) -> str:
    """The Jinja template ``source`` with ``css`` inlined, as Jinja source again.

    While premailer parses and inlines, each Jinja tag is hidden: a statement (``{% for %}``)
    as an HTML comment, which the parser keeps wherever it stands, an expression as a plain
    word, which it keeps in text and in attribute values. Class attributes must be literal,
    or the rules for them find nothing to style. Raises ValueError if a tag did not come
    through (a statement inside a ``<style>`` block would not).
    """
    if _MARKER in source:
        raise ValueError(f"a template must not contain {_MARKER!r}")
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group())
        marker = f"{_MARKER}{len(tags) - 1}x"
        return marker if match.group().startswith("{{") else f"<!--{marker}-->"

    inlined, restored = _HIDDEN_TAG.subn(
        lambda m: tags[int(m.group(1) or m.group(2))],
        inline_css(_JINJA_TAG.sub(hide, source), css),
    )
    if restored != len(tags):
        raise ValueError(f"{len(tags) - restored} Jinja tag(s) lost while inlining the template")
    return inlined


def trim_words(text: str, limit: int) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:.-")
    return cut + "…"


def short_authors(authors: list[str]) -> str:
    if len(authors) > MAX_AUTHORS:
        authors = [*authors[: MAX_AUTHORS - 1], f"et al. ({len(authors)} authors)"]
    return trim_words(", ".join(authors), AUTHORS_CHARS)


def paper_url(paper: Paper) -> str:
    """The link an email or a page shows for a paper: never one that is not http(s), even
    for a paper stored before links were checked."""
    return paper_link(paper.id, paper.url)


def feedback_url(link: str, paper_id: str, signal: str) -> str:
    """``link`` (the subscriber's ``/feedback/TOKEN``, a path or a full URL) for one paper and
    one of :data:`FEEDBACK_SIGNALS`: ``LINK?paper=ID&signal=more``. The paper id is in the
    query, encoded, because some have a slash (``astro-ph/0601001``). The token says who
    marks; which paper and which way is the reader's choice anyway, and is checked on use."""
    return f"{link}?{urlencode({'paper': paper_id, 'signal': signal})}"


@dataclass(frozen=True)
class Card:
    """What an email shows of a paper: the same for every subscriber."""

    title: str
    url: str
    authors: str
    #: Source and categories, e.g. "arXiv · cs.LG · stat.ML".
    labels: str
    #: The trending signal (Hugging Face upvotes), if any.
    upvotes: int | None
    abstract: str
    #: The abstract as the plain-text part shows it: wrapped and indented under the title.
    abstract_text: str

    @classmethod
    def of(cls, paper: Paper) -> Card:
        abstract = trim_words(display_text(paper.abstract), ABSTRACT_CHARS)
        return cls(
            title=trim_words(display_text(paper.title), TITLE_CHARS),
            url=paper_url(paper),
            authors=short_authors([display_text(a) for a in paper.authors]),
            labels=" · ".join(
                filter(None, [SOURCE_NAMES.get(paper.source), *paper.categories[:MAX_CATEGORIES]])
            ),
            upvotes=paper.upvotes or None,
            abstract=abstract,
            abstract_text=textwrap.fill(
                abstract,
                TEXT_WIDTH,
                initial_indent="   ",
                subsequent_indent="   ",
                break_long_words=False,
                break_on_hyphens=False,
            ),
        )


@dataclass(frozen=True)
class Item:
    """A card as one subscriber gets it: why it was picked, and their feedback links."""

    card: Card
    reason: str
    more_url: str
    less_url: str


@dataclass(frozen=True)
class RenderedEdition:
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    preferences_url: str


class Renderer:
    """Renders the emails of one run: the template is inlined and each paper's card made
    once, on first use, and shared by every email of the run."""

    def __init__(self, settings: Settings, signer: LinkSigner):
        self.settings = settings
        self.signer = signer
        self.env = template_environment()
        self.dkim = DkimSigner.from_settings(settings)
        self._cards: dict[str, Card] = {}

    @cached_property
    def css(self) -> str:
        return (templates_dir() / STYLESHEET).read_text(encoding="utf-8")

    @cached_property
    def html_template(self) -> jinja2.Template:
        """The HTML template with the stylesheet inlined, once."""
        source = (templates_dir() / HTML_TEMPLATE).read_text(encoding="utf-8")
        return self.env.from_string(inline_template(source, self.css))

    @cached_property
    def text_template(self) -> jinja2.Template:
        return self.env.get_template(TEXT_TEMPLATE)

    def card(self, paper: Paper) -> Card:
        if (card := self._cards.get(paper.id)) is None:
            card = self._cards[paper.id] = Card.of(paper)
        return card

    def link(self, purpose: str, subscriber: Subscriber, **data: str) -> str:
        return self.signer.url(self.settings.base_url, purpose, subscriber, **data)

    def subject(self, edition: date, picks: list[Pick]) -> str:
        label = f"{edition:%b} {edition.day}"
        if not picks:
            return f"{self.settings.brand} · {label}"
        top = self.card(picks[0].paper).title
        more = f" (+{len(picks) - 1} more)" if len(picks) > 1 else ""
        return trim_words(f"{label}: {top}", SUBJECT_CHARS - len(more)) + more

    def context(self, subscriber: Subscriber, picks: list[Pick], edition: date) -> dict:
        """What the templates show to ``subscriber``; each link token is signed once.
        ``picks`` are the email's papers: its own picks, then its "Trending today"."""
        feedback = self.link("feedback", subscriber)

        def items_of(section: Section) -> list[Item]:
            return [
                Item(
                    card=self.card(pick.paper),
                    reason=trim_words(one_line(pick.reason), REASON_CHARS),
                    more_url=feedback_url(feedback, pick.paper.id, "more"),
                    less_url=feedback_url(feedback, pick.paper.id, "less"),
                )
                for pick in in_section(picks, section)
            ]

        own = in_section(picks, Section.PICKS)
        items, trending = items_of(Section.PICKS), items_of(Section.TRENDING)
        count = f"{len(items)} new paper{'s' if len(items) != 1 else ''} for you today"
        return {
            "subject": self.subject(edition, own),
            "brand": self.settings.brand,
            "edition_label": f"{edition:%A}, {edition:%B} {edition.day}, {edition.year}",
            "preheader": trim_words(
                "; ".join([count, *(item.card.title for item in items[:3])]), PREHEADER_CHARS
            ),
            # Empty for a reader who gave none: the intro says what they get instead.
            "interests": trim_words(display_text(subscriber.interests), INTERESTS_CHARS),
            "categories": ", ".join(subscriber.categories),
            "items": items,
            # The picks came from the trending list: nothing suited the reader's profile.
            "by_trend": any(pick.by_trend for pick in own),
            # (heading, note, items) of each part of the email: its picks, untitled, then
            # "Trending today".
            "sections": [
                (None, None, items),
                *([("Trending today", TRENDING_NOTE, trending)] if trending else []),
            ],
            "email": subscriber.email,
            "archive_url": self.link("archive", subscriber, edition=edition.isoformat()),
            "preferences_url": self.link("preferences", subscriber),
            "unsubscribe_url": self.link("unsubscribe", subscriber),
            "sender_lines": [
                one_line(line)
                for line in self.settings.sender_identity.splitlines()
                if line.strip()
            ],
        }

    def render(self, subscriber: Subscriber, picks: list[Pick], edition: date) -> RenderedEdition:
        context = self.context(subscriber, picks, edition)
        return RenderedEdition(
            context["subject"],
            self.html_template.render(context),
            self.text_template.render(context),
            context["unsubscribe_url"],
            context["preferences_url"],
        )

    def message(
        self, subscriber: Subscriber, picks: list[Pick], edition: date, msg_id: str
    ) -> EmailMessage:
        """The email, ready to send: :meth:`render`, :meth:`compose`, then :meth:`seal` with
        its Message-ID."""
        rendered = self.render(subscriber, picks, edition)
        return self.seal(self.compose(subscriber, rendered, edition), msg_id)

    def compose(
        self, subscriber: Subscriber, rendered: RenderedEdition, edition: date
    ) -> OutgoingEmail:
        """The email of ``rendered`` without its Message-ID (nor the DKIM signature that
        covers it), so that a sender can make the next email while the previous one is on
        the wire, and claim it in the ledger, which names its Message-ID, only when a
        connection is free.

        The message is built field by field rather than through ``set_content``: the headers
        that are the same for the whole run are parsed once, and each part is encoded
        quoted-printable by :func:`binascii.b2a_qp` (C), which keeps every line 7-bit and
        short: no relay has to re-encode the body (which would break a DKIM signature), and
        no server needs 8BITMIME. The transports read it like any other ``EmailMessage``.
        """
        message = OutgoingEmail()
        message.sender = self.envelope_sender(subscriber, edition)
        message.recipient = subscriber.email
        message["Subject"] = rendered.subject  # RFC 2047 encoded words when not ASCII
        for name, value in self._run_headers:
            message.set_raw(name, value)
        if subscriber.email.isascii():  # a normalized ASCII address is a header as it is
            message.set_raw("To", subscriber.email)
        else:
            message["To"] = Address(addr_spec=subscriber.email)
        message.set_raw("Date", format_datetime(datetime.now(UTC)))
        mailto = f"mailto:{self._sender}?subject=unsubscribe"
        set_verbatim(message, "List-Unsubscribe", f"<{rendered.unsubscribe_url}>,\n <{mailto}>")
        message.set_raw("X-Newsletter-Edition", edition.isoformat())
        message.set_raw("MIME-Version", "1.0")
        message.set_raw("Content-Type", self._alternative)
        message.set_payload([self._part(rendered.text, "plain"), self._part(rendered.html, "html")])
        return message

    def envelope_sender(self, subscriber: Subscriber, edition: date) -> str:
        """Where the servers on the way send a bounce (the Return-Path): with
        ``bounce_address`` set, its VERP form for this subscriber and edition, else the
        From address."""
        if not self.settings.bounce_address:
            return self._sender
        token = self.signer.return_token(subscriber.id, subscriber.email, edition)
        return verp_address(self.settings.bounce_address, token)

    def seal(self, message: OutgoingEmail, msg_id: str) -> OutgoingEmail:
        """Give ``message`` its Message-ID (in place of the one it had) and, with DKIM on,
        sign it; then flatten it once, as SMTP sends it."""
        del message["Message-ID"], message["DKIM-Signature"]
        message.set_raw("Message-ID", msg_id)
        message.message_id = msg_id
        if self.dkim:
            set_verbatim(message, "DKIM-Signature", self.dkim.signature(message))
        message.wire = self._wire(message)
        return message

    def _wire(self, message: OutgoingEmail) -> bytes:
        """``message.as_bytes(policy=SMTP)``, laid out directly, several times faster: the
        headers that are the same for the whole run are folded once, and the two parts,
        quoted-printable text already, are joined as the email package joins them (a test
        checks that the bytes are the same)."""
        folded = self._folded_once
        head = b"".join(
            folded.get(id(value)) or SMTP.fold_binary(name, value)
            for name, value in message.raw_items()
        )
        boundary = f"--{self._boundary}".encode()
        parts = [
            b"".join(folded[id(value)] for _, value in part.raw_items())
            + b"\r\n"
            + _text_payload(part).encode("ascii").replace(b"\n", b"\r\n")
            for part in message.iter_parts()
        ]
        body = b"\r\n".join([boundary + b"\r\n" + part for part in parts] + [boundary + b"--\r\n"])
        return head + b"\r\n" + body

    @cached_property
    def _folded_once(self) -> dict[int, bytes]:
        """The headers of the run, folded as SMTP sends them, by identity."""
        headers = [*self._run_headers, ("Content-Type", self._alternative)]
        headers += [h for part in self._part_headers.values() for h in part]
        return {id(value): SMTP.fold_binary(name, value) for name, value in headers}

    @cached_property
    def _sender(self) -> str:
        return self.settings.sender_email

    @cached_property
    def _run_headers(self) -> list[tuple[str, str]]:
        """The headers every email of the run has, each parsed once (the address headers
        stay header objects, whose ``addresses`` the relays read)."""
        factory = default_policy.header_factory
        headers: list[tuple[str, str]] = [("From", factory("From", self.settings.from_address))]
        if self.settings.reply_to:
            headers.append(("Reply-To", factory("Reply-To", self.settings.reply_to)))
        list_id = formataddr((self.settings.brand, f"daily-papers.{self.settings.sender_domain}"))
        headers.append(("List-Id", factory("List-Id", list_id)))
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return headers

    @cached_property
    def _boundary(self) -> str:
        """The MIME boundary of the run: quoted-printable text never holds ``==``, so no
        part can contain it."""
        return f"==============={secrets.randbelow(10**19):019d}=="

    @cached_property
    def _alternative(self) -> str:
        """The multipart/alternative Content-Type, with the run's boundary."""
        value = f'multipart/alternative; boundary="{self._boundary}"'
        return default_policy.header_factory("Content-Type", value)

    @cached_property
    def _part_headers(self) -> dict[str, list[tuple[str, str]]]:
        """The headers of the text and HTML parts, parsed once."""
        factory = default_policy.header_factory
        return {
            subtype: [
                ("Content-Type", factory("Content-Type", f'text/{subtype}; charset="utf-8"')),
                (
                    "Content-Transfer-Encoding",
                    factory("Content-Transfer-Encoding", "quoted-printable"),
                ),
            ]
            for subtype in ("plain", "html")
        }

    def _part(self, text: str, subtype: str) -> EmailMessage:
        """A text part, encoded quoted-printable; ends with a line break, as ``set_content``
        makes it."""
        part = EmailMessage()
        for name, value in self._part_headers[subtype]:
            part.set_raw(name, value)
        body = text if text.endswith("\n") else text + "\n"
        part.set_payload(binascii.b2a_qp(body.encode(), istext=True).decode("ascii"))
        return part


def _text_payload(part: Message) -> str:
    """The payload of a part that :meth:`Renderer._part` made: quoted-printable text."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        raise TypeError(f"a part of the email is not text: {type(payload).__name__}")
    return payload


class _VerbatimHeader(str):
    """A header value that the email package writes out as it is, line by line, under any
    policy. Left to itself, it refolds a line longer than 78 characters, and a long URL
    has nowhere to fold: it becomes an RFC 2047 encoded word that no mail client reads as
    a link (and a DKIM signature refolded that way no longer verifies)."""

    name: str

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {policy.linesep.join(self.splitlines())}{policy.linesep}"


def set_verbatim(message: EmailMessage, name: str, value: str) -> None:
    """Add header ``name``, folded where ``value`` has line breaks (each followed by
    whitespace) and nowhere else. ``value`` must be ASCII."""
    if not value.isascii():
        raise ValueError(f"{name}: a verbatim header must be ASCII")
    header = _VerbatimHeader(value)
    header.name = name
    message.set_raw(name, header)
