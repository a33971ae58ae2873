"""One settings object: defaults < TOML file < ``NEWSLETTER_*`` environment < CLI flags.

The TOML file is ``newsletter.toml`` in the working directory, or the path in
``NEWSLETTER_CONFIG``. Secrets (the signing key, SMTP passwords) are read from the
environment only; a TOML file that carries one is refused, so that a config file
can be committed or shared without leaking them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONFIG_ENV = "NEWSLETTER_CONFIG"
DEFAULT_CONFIG_FILE = "newsletter.toml"
DEFAULT_FROM = "Daily Papers <papers@localhost>"
#: Transports whose URL user part is an API token.
RELAY_SCHEMES = frozenset({"postmark", "sendgrid", "resend"})
SECRET_FIELDS = frozenset(
    {"secret_key", "old_secret_keys", "smtp_password", "relay_token", "webhook_secret"}
)


class SettingsError(ValueError):
    """A setting is missing, malformed or in the wrong place."""


@dataclass(frozen=True)
class Settings:
    #: SQLite database file.
    db: Path = Path("newsletter.db")
    #: Where mail goes: ``outbox:DIR``, ``smtp://[user@]host:port`` or ``smtps://...``.
    transport: str = "outbox:./outbox"
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
    #: SMTP password, if it is not in the transport URL. Environment only.
    smtp_password: str = field(default="", repr=False)
    #: Papers per email for new subscribers.
    papers_per_email: int = 5
    #: Minimum relevance score; a thin day sends fewer papers rather than irrelevant ones.
    min_score: float = 0.04
    #: Papers first seen more than this many days before an edition are not candidates.
    candidate_days: int = 7
    #: Score bonus for a paper in one of the subscriber's arXiv categories.
    category_boost: float = 0.1
    #: The semantic model (the ``semantic`` extra): ``auto`` (if installed), ``on``, ``off``.
    semantic: str = "auto"
    #: Share of the semantic model in relevance, and the similarity that alone makes a
    #: paper relevant.
    semantic_weight: float = 0.6
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
    #: Parallel connections to the mail server (SMTP): at most one message per connection
    #: is in flight, so at most that many can be left unknown by a crash.
    send_connections: int = 1
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
            (self.min_score >= 0, "min_score must not be negative"),
            (self.candidate_days >= 1, "candidate_days must be at least 1"),
            (self.category_boost >= 0, "category_boost must not be negative"),
            (_known_timezone(self.timezone), f"timezone {self.timezone!r} is not an IANA name"),
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
            (self.max_per_second >= 0 and self.max_per_hour >= 0, "send caps must not be negative"),
            (self.storm_window >= 1, "storm_window must be at least 1"),
            (self.soft_bounce_limit >= 1, "soft_bounce_limit must be at least 1"),
            (self.soft_bounce_window_days >= 1, "soft_bounce_window_days must be at least 1"),
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
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

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


def _is_hhmm(value: str) -> bool:
    hours, _, minutes = value.partition(":")
    return hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60


def _known_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
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
    return value


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
    transport = urlsplit(str(section.get("transport", "")))
    if transport.password or (transport.scheme in RELAY_SCHEMES and transport.username):
        raise SettingsError(
            f"{path}: the transport URL carries a secret; set NEWSLETTER_SMTP_PASSWORD or "
            "NEWSLETTER_RELAY_TOKEN (or the whole NEWSLETTER_TRANSPORT) in the environment"
        )
    return dict(section)
