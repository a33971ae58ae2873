"""The remote sources by name, built from the settings (and command-line overrides)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import httpx

from ..fetch import default_user_agent, make_client
from ..settings import Settings, SettingsError
from . import Source
from .arxiv_api import ArxivAPISource
from .arxiv_rss import ArxivRSSSource
from .hf_daily import HFDailySource

REMOTE_SOURCES = ("arxiv", "arxiv-rss", "hf-daily")


def build_source(
    name: str,
    settings: Settings,
    *,
    categories: Sequence[str] = (),
    terms: Sequence[str] = (),
    day: date | None = None,
) -> Source:
    """Source ``name``; ``categories`` and ``terms`` replace the settings' when given."""
    categories = list(categories) or settings.arxiv_categories
    terms = list(terms) or settings.arxiv_terms
    if name == "arxiv":
        if not categories and not terms:
            raise SettingsError(
                "the arxiv source needs categories or search terms: --category cs.LG, "
                "or arxiv_categories in the settings"
            )
        return ArxivAPISource(
            categories,
            terms,
            base_url=settings.arxiv_api_url,
            max_results=settings.arxiv_max_results,
            delay=settings.arxiv_delay,
            retries=settings.fetch_retries,
            max_bytes=settings.max_response_bytes,
        )
    if name == "arxiv-rss":
        if not categories:
            raise SettingsError(
                "the arxiv-rss source needs categories: --category cs.AI, "
                "or arxiv_categories in the settings"
            )
        return ArxivRSSSource(
            categories,
            base_url=settings.arxiv_rss_url,
            retries=settings.fetch_retries,
            max_bytes=settings.max_response_bytes,
        )
    if name == "hf-daily":
        return HFDailySource(
            day,
            base_url=settings.hf_daily_url,
            retries=settings.fetch_retries,
            max_bytes=settings.max_response_bytes,
        )
    raise SettingsError(f"unknown source {name!r}; known: {', '.join(REMOTE_SOURCES)}")


def http_client(settings: Settings) -> httpx.Client:
    """The client every source shares: one User-Agent that says who asks and how to reach
    them, and the configured timeout."""
    agent = default_user_agent(settings.base_url, settings.sender_email)
    return make_client(agent, settings.fetch_timeout)
