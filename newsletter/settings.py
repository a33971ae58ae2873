"""One settings object: defaults < TOML file < ``NEWSLETTER_*`` environment < CLI flags.

The TOML file is ``newsletter.toml`` in the working directory, or the path in
``NEWSLETTER_CONFIG``. Secrets (the signing key, SMTP passwords) are read from the
environment only; a TOML file that carries one is refused, so that a config file
can be committed or shared without leaking them.
"""

from __future__ import annotations

import dataclasses
import email.policy
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from email.errors import HeaderParseError, ObsoleteHeaderDefect
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .urls import carries_secret

#: Settings that go into a header of every email: From, Reply-To, the links of
#: List-Unsubscribe (under ``base_url``), DKIM-Signature. Surrounding whitespace (the
#: ``\r`` a CRLF env file leaves) is taken off; any other control character is refused.
HEADER_SETTINGS = (
    "from_address",
    "reply_to",
    "base_url",
    "dkim_selector",
    "dkim_domain",
    "bounce_address",
)
#: C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: ... and, in a URL, any whitespace.
_URL_BREAK = re.compile(rf"{_CONTROL.pattern}|\s")

CONFIG_ENV = "NEWSLETTER_CONFIG"
DEFAULT_CONFIG_FILE = "newsletter.toml"
DEFAULT_FROM = "Daily Papers <papers@localhost>"
#: Longer than any IANA timezone name ("America/Argentina/ComodRivadavia" has 32).
MAX_TIMEZONE_CHARS = 64
#: The dashboard's password guards every address on the list: no short one.
MIN_ADMIN_PASSWORD = 16
SECRET_FIELDS = frozenset(
    {
        "secret_key",
        "old_secret_keys",
        "smtp_password",
        "relay_token",
        "webhook_secret",
        "bounce_password",
        "admin_password",
    }
)
#: The longest local part of ``bounce_address``: ``LOCAL+TOKEN`` must stay within the 64
#: characters RFC 5321 allows a local part, and a return-path token takes up to 35
#: (the ``+`` and :data:`newsletter.tokens.RETURN_TOKEN_MAX_CHARS`).
MAX_BOUNCE_LOCAL_PART = 29


class SettingsError(ValueError):
    """A setting is missing, malformed or in the wrong place."""


@dataclass(frozen=True)
class Settings:
    #: SQLite database file.
    db: Path = Path("newsletter.db")
    #: Where mail goes: ``outbox:DIR``, ``smtp://[user@]host:port`` or ``smtps://...``.
    #: Kept out of the repr: the URL may carry a password or a relay token.
    transport: str = field(default="outbox:./outbox", repr=False)
    #: ``From`` header, with a display name.
    from_address: str = DEFAULT_FROM
    #: Optional ``Reply-To`` header.
    reply_to: str = ""
    #: Public base URL of the web app, used in every link of an email.
    base_url: str = "http://localhost:8000"
    #: Who sends the newsletter, shown in every footer (name and postal address).
    sender_identity: str = "Daily Papers, a personal research digest"
    #: Key that signs preference and unsubscribe links. Environment only.
    secret_key: str = field(default="", repr=False)
    #: Earlier signing keys, still accepted for links already sent. Environment only.
    old_secret_keys: list[str] = field(default_factory=list, repr=False)
    #: API token of a relay (postmark://, sendgrid://, resend://) when the transport URL
    #: has none. Environment only.
    relay_token: str = field(default="", repr=False)
    #: Password the relay's bounce webhook sends (basic auth). Environment only.
    webhook_secret: str = field(default="", repr=False)
    #: Password of the operator's dashboard (``/admin``, ``/metrics``); unset, those pages
    #: answer 404. Environment only.
    admin_password: str = field(default="", repr=False)
    #: SMTP password, if it is not in the transport URL. Environment only.
    smtp_password: str = field(default="", repr=False)
    #: Papers per email for new subscribers.
    papers_per_email: int = 5
    #: Papers of the day's trending list in a "Trending today" section after a reader's
    #: personal picks (0: no section); each reader can change it on the preferences page.
    trending_papers: int = 3
    #: Minimum relevance score; a thin day sends fewer papers rather than irrelevant ones.
    min_score: float = 0.04
    #: Papers first seen more than this many days before an edition are not candidates.
    candidate_days: int = 7
    #: Score bonus for a paper in one of the subscriber's arXiv categories.
    category_boost: float = 0.1
    #: The semantic model (installed with the newsletter): ``auto`` (if its runtime is
    #: installed), ``on``, ``off``.
    semantic: str = "auto"
    #: Share of the semantic model in relevance, and the similarity that alone makes a
    #: paper relevant.
    semantic_weight: float = 0.5
    semantic_min_score: float = 0.35
    #: Weights of the trending signal (log-scaled upvotes) and of recency.
    trending_weight: float = 0.05
    recency_weight: float = 0.02
    #: How strongly "more like this" and "less like this" move a subscriber's ranking.
    like_weight: float = 0.75
    dislike_weight: float = 0.5
    #: Diversity: 1 ranks by relevance alone, lower values push near-duplicates apart.
    diversity: float = 0.9
    #: The most of one email that one arXiv category may fill.
    max_category_share: float = 0.6
    #: Defaults for new subscribers.
    timezone: str = "UTC"
    delivery_hour: int = 7
    #: Remote sources that ``newsletter ingest`` (without arguments) and the daily run use:
    #: any of ``arxiv``, ``arxiv-rss``, ``hf-daily``.
    sources: list[str] = field(default_factory=list)
    #: arXiv categories for the ``arxiv`` and ``arxiv-rss`` sources.
    arxiv_categories: list[str] = field(default_factory=list)
    #: Search terms for the ``arxiv`` source (each one narrows the query).
    arxiv_terms: list[str] = field(default_factory=list)
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_rss_url: str = "https://rss.arxiv.org/atom"
    hf_daily_url: str = "https://huggingface.co/api/daily_papers"
    #: Seconds between two arXiv API requests (arXiv asks for about 3).
    arxiv_delay: float = 3.0
    #: Most papers one ``arxiv`` ingest pages through.
    arxiv_max_results: int = 500
    #: Seconds to wait for a source to connect or answer, and retries after a failure.
    fetch_timeout: float = 30.0
    fetch_retries: int = 4
    #: The largest response body read from a source or an ingested URL, in bytes (after
    #: decompression); a larger one is cut there and reported as a failed request.
    max_response_bytes: int = 50_000_000
    #: Soft bounces within ``soft_bounce_window_days`` that suppress an address.
    soft_bounce_limit: int = 3
    soft_bounce_window_days: int = 30
    #: The address that bounces come back to, e.g. ``bounces@news.example.org``; set, each
    #: message's envelope sender (Return-Path) is ``bounces+TOKEN@news.example.org`` (VERP),
    #: the token signed and naming the subscriber and the edition. Empty: the From address.
    bounce_address: str = ""
    #: Where ``newsletter bounces scan`` reads the bounces: ``imaps://user@host[:993]``
    #: (``imap://`` upgrades with STARTTLS), ``maildir:/path`` or ``mbox:/path``. Empty:
    #: no scan. Kept out of the repr: the URL may carry a password.
    bounce_mailbox: str = field(default="", repr=False)
    #: The IMAP password, if it is not in the mailbox URL. Environment only.
    bounce_password: str = field(default="", repr=False)
    #: The IMAP folder that processed messages are moved to (created if missing).
    bounce_folder: str = "Processed"
    #: Minutes between two scans of the bounce mailbox by the worker (0: the worker does not).
    bounce_scan_minutes: int = 15
    #: A message in the bounce mailbox larger than this (bytes) is reported and skipped.
    max_bounce_bytes: int = 5_000_000
    #: Apply a bounce by mail only to the subscriber its VERP token names (it needs
    #: ``bounce_address``). Without it a bounce that came back without a token (a relay's
    #: own return path, a forwarding server) is applied to the reader the ledger sent the
    #: quoted message to, else to the address the report names, which anyone can write: a
    #: forged report could suppress any subscriber.
    bounce_require_verp: bool = False
    #: Parallel connections to the mail server (SMTP; a relay uses one): at most one
    #: message per connection is in flight, so at most that many can be left unknown by a
    #: crash (through a relay, one batch).
    send_connections: int = 1
    #: How long a sender's claim holds a message: past it, another sender takes the
    #: message as unknown and sends it again (PostgreSQL's senders on several hosts).
    lease_seconds: int = 900
    #: Send caps: messages per second and per hour (0: no cap).
    max_per_second: float = 0.0
    max_per_hour: int = 0
    #: A run pauses itself when at least this share of its last ``storm_window`` messages
    #: failed (the server or relay is refusing everything); the worker tries again later.
    storm_window: int = 20
    storm_failure_share: float = 0.8
    #: The worker: minutes between two looks for due editions, and the times ("HH:MM", the
    #: server's local time) at which it ingests from the enabled sources.
    worker_tick_minutes: int = 5
    ingest_times: list[str] = field(default_factory=lambda: ["05:00"])
    #: DKIM signing, off unless a selector and a key file are set. The key file holds the
    #: private key (PEM) and is a secret: keep it out of the repository and readable only
    #: by the newsletter's user; its path is not a secret and may sit in the TOML file.
    dkim_selector: str = ""
    dkim_key_path: str = ""
    #: Signing domain (``d=``); empty: the domain of ``from_address``, as DMARC wants.
    dkim_domain: str = ""
    #: Days a web sign-up may stay unconfirmed before it is forgotten.
    pending_expiry_days: int = 7
    #: Sign-up requests allowed per client IP, and per address, in ``subscribe_limit_window``
    #: seconds; more are refused (429) until the window has passed.
    subscribe_limit_per_ip: int = 20
    subscribe_limit_per_address: int = 3
    subscribe_limit_window: int = 3600

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.delivery_hour <= 23, "delivery_hour must be 0-23"),
            (1 <= self.papers_per_email <= 50, "papers_per_email must be 1-50"),
            (0 <= self.trending_papers <= 10, "trending_papers must be 0-10"),
            (self.min_score >= 0, "min_score must not be negative"),
            (self.candidate_days >= 1, "candidate_days must be at least 1"),
            (self.category_boost >= 0, "category_boost must not be negative"),
            (known_timezone(self.timezone), f"timezone {self.timezone!r} is not an IANA name"),
            (self.semantic in ("auto", "on", "off"), "semantic must be auto, on or off"),
            (0 <= self.semantic_weight <= 1, "semantic_weight must be 0-1"),
            (0 <= self.diversity <= 1, "diversity must be 0-1"),
            (0 < self.max_category_share <= 1, "max_category_share must be in (0, 1]"),
            (self.arxiv_delay >= 0, "arxiv_delay must not be negative"),
            (self.arxiv_max_results >= 1, "arxiv_max_results must be at least 1"),
            (self.fetch_timeout > 0, "fetch_timeout must be positive"),
            (self.fetch_retries >= 0, "fetch_retries must not be negative"),
            (self.max_response_bytes >= 1024, "max_response_bytes must be at least 1024"),
            (1 <= self.send_connections <= 32, "send_connections must be 1-32"),
            (self.lease_seconds >= 1, "lease_seconds must be at least 1"),
            (self.max_per_second >= 0 and self.max_per_hour >= 0, "send caps must not be negative"),
            (self.storm_window >= 1, "storm_window must be at least 1"),
            (self.soft_bounce_limit >= 1, "soft_bounce_limit must be at least 1"),
            (self.soft_bounce_window_days >= 1, "soft_bounce_window_days must be at least 1"),
            (self.bounce_scan_minutes >= 0, "bounce_scan_minutes must not be negative"),
            (self.max_bounce_bytes >= 1024, "max_bounce_bytes must be at least 1024"),
            (
                self.bounce_address or not self.bounce_require_verp,
                "bounce_require_verp needs bounce_address (the VERP tokens come back to it)",
            ),
            (0 < self.storm_failure_share <= 1, "storm_failure_share must be in (0, 1]"),
            (self.worker_tick_minutes >= 1, "worker_tick_minutes must be at least 1"),
            (all(_is_hhmm(t) for t in self.ingest_times), "ingest_times must be HH:MM"),
            (
                bool(self.dkim_selector) == bool(self.dkim_key_path),
                "dkim_selector and dkim_key_path go together: set both to sign, or neither",
            ),
            (self.pending_expiry_days >= 1, "pending_expiry_days must be at least 1"),
            (self.subscribe_limit_per_ip >= 1, "subscribe_limit_per_ip must be at least 1"),
            (
                self.subscribe_limit_per_address >= 1,
                "subscribe_limit_per_address must be at least 1",
            ),
            (self.subscribe_limit_window >= 1, "subscribe_limit_window must be at least 1"),
            (
                not self.admin_password or len(self.admin_password) >= MIN_ADMIN_PASSWORD,
                f"NEWSLETTER_ADMIN_PASSWORD must be at least {MIN_ADMIN_PASSWORD} characters",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        self._check_header_settings()

    def _check_header_settings(self) -> None:
        """The settings that become headers of every email are one line of text each (a
        line break would start a header of its own: ``Bcc:``), and the addresses parse."""
        for name in HEADER_SETTINGS:
            value = getattr(self, name)
            if bad := (_URL_BREAK if name == "base_url" else _CONTROL).search(value):
                raise SettingsError(
                    f"setting {name!r} ({env_name(name)}) contains {bad.group()!r} at position"
                    f" {bad.start()}: it goes into a mail header and must be one line of text"
                    + (" (a URL, without spaces)" if name == "base_url" else "")
                )
        if bad := _CONTROL.search(self.sender_identity.replace("\n", "").replace("\r", "")):
            raise SettingsError(
                f"setting 'sender_identity' contains the control character {bad.group()!r}"
            )
        addresses = [("from_address", "From", True), ("reply_to", "Reply-To", False)]
        for name, header, single in addresses:
            value = getattr(self, name)
            if (value or single) and not _is_address_header(value, header, single):
                kind = "one address" if single else "a list of addresses"
                raise SettingsError(
                    f"setting {name!r} ({env_name(name)}) is not {kind} like"
                    f" 'Daily Papers <papers@example.org>': {value!r}"
                )
        self._check_bounce_address()

    def _check_bounce_address(self) -> None:
        """``bounce_address`` is a bare address (no display name) whose local part leaves
        room for a token."""
        if not self.bounce_address:
            return
        local_part = self.bounce_address.rpartition("@")[0]
        if not (
            _is_address_header(self.bounce_address, "Sender", True)
            and parseaddr(self.bounce_address)[1] == self.bounce_address
            and self.bounce_address.isascii()
        ):
            raise SettingsError(
                "setting 'bounce_address' (NEWSLETTER_BOUNCE_ADDRESS) is not one plain address"
                f" like 'bounces@news.example.org': {self.bounce_address!r}"
            )
        if "+" in local_part or len(local_part) > MAX_BOUNCE_LOCAL_PART:
            raise SettingsError(
                f"setting 'bounce_address' (NEWSLETTER_BOUNCE_ADDRESS): the part before @ must"
                f" have at most {MAX_BOUNCE_LOCAL_PART} characters and no '+' (the token"
                f" follows a '+'): {self.bounce_address!r}"
            )

    @property
    def sender_email(self) -> str:
        return parseaddr(self.from_address)[1]

    @property
    def brand(self) -> str:
        """The newsletter's name, as emails and pages show it: the sender's display name."""
        return parseaddr(self.from_address)[0] or "Daily Papers"

    @property
    def sender_domain(self) -> str:
        return self.sender_email.rpartition("@")[2] or "localhost"


def _is_address_header(value: str, header_name: str, single: bool) -> bool:
    """Whether ``value`` is an address header ``header_name``: ``Name <user@domain>``,
    or unless ``single`` a list of them."""
    try:
        header = email.policy.default.header_factory(header_name, value)
    except (IndexError, HeaderParseError):  # the parser trips over some, like "papers@"
        return False
    addresses = header.addresses
    return (
        all(isinstance(d, ObsoleteHeaderDefect) for d in header.defects)
        and len(addresses) >= 1
        and not (single and len(addresses) > 1)
        and all(a.username and a.domain for a in addresses)
    )


def _is_hhmm(value: str) -> bool:
    hours, _, minutes = value.partition(":")
    return hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA timezone. Never raises: a name that is a folder of the
    timezone database (``Europe``), too long for a file name, or not a path at all is not
    one."""
    if not name or len(name) > MAX_TIMEZONE_CHARS:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def env_name(field_name: str) -> str:
    return "NEWSLETTER_" + {"from_address": "FROM"}.get(field_name, field_name.upper())


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the type of setting ``name``; text (from the environment) is parsed, other
    values must already have the right type (``2.7`` is not a number of papers)."""
    if name not in _FIELD_TYPES:
        raise SettingsError(f"unknown setting {name!r}")
    kind = typing.get_type_hints(Settings)[name]
    problem = f"setting {name!r}: cannot read {value!r} as {getattr(kind, '__name__', kind)}"
    if kind is Path:
        if not isinstance(value, str | Path):
            raise SettingsError(problem)
        return Path(value).expanduser()
    if kind is bool:
        if isinstance(value, bool):
            return value
        words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
        if isinstance(value, str) and value.strip().lower() in words:
            return words[value.strip().lower()]
        raise SettingsError(problem)
    if kind is int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(problem)
    if typing.get_origin(kind) is list:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SettingsError(problem)
        return [i.strip() for i in items if i.strip()]
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(problem) from exc
    if not isinstance(value, str):
        raise SettingsError(problem)
    return value.strip() if name in HEADER_SETTINGS else value


def load_settings(
    environ: typing.Mapping[str, str] | None = None,
    config_path: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from the TOML file, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    path = config_path or Path(environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)
    explicit = config_path is not None or CONFIG_ENV in environ
    if path.exists():
        values.update(_read_toml(path))
    elif explicit:
        raise SettingsError(f"config file {path} does not exist")

    for name in _FIELD_TYPES:
        if (raw := environ.get(env_name(name))) is not None:
            values[name] = raw

    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**{k: _coerce(k, v) for k, v in values.items()})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    # Settings may sit at the top level or in a [newsletter] table; both are checked.
    table = data.get("newsletter", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: 'newsletter' must be a table of settings")
    section = {**{k: v for k, v in data.items() if k != "newsletter"}, **table}
    unknown = sorted(set(section) - set(_FIELD_TYPES))
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    secrets = sorted(SECRET_FIELDS & set(section))
    if secrets:
        names = ", ".join(env_name(s) for s in secrets)
        raise SettingsError(f"{path}: secrets belong in the environment, not a file; set {names}")
    if carries_secret(str(section.get("bounce_mailbox", ""))):
        raise SettingsError(
            f"{path}: the bounce mailbox URL carries a password; set NEWSLETTER_BOUNCE_PASSWORD"
            " (or the whole NEWSLETTER_BOUNCE_MAILBOX) in the environment"
        )
    if carries_secret(str(section.get("transport", ""))):
        raise SettingsError(
            f"{path}: the transport URL carries a secret; set NEWSLETTER_SMTP_PASSWORD or "
            "NEWSLETTER_RELAY_TOKEN (or the whole NEWSLETTER_TRANSPORT) in the environment"
        )
    return dict(section)
