"""The demo: from nothing to a real edition in a file outbox, with no network and no server."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Required, TypedDict

from .mail.transport import transport_from_url
from .sending.delivery import SendOptions, send_edition
from .sending.report import SendReport
from .settings import Settings
from .store import DuplicateSubscriber, open_store
from .store.ingest import IngestReport, ingest_path, sample_papers_path
from .subscribers.profiles import add_subscriber

DEFAULT_OUTBOX = "outbox:./outbox"


class SampleSubscriber(TypedDict, total=False):
    email: Required[str]
    interests: str
    categories: str
    timezone: Required[str]


SAMPLE_SUBSCRIBERS: list[SampleSubscriber] = [
    {
        "email": "ada@example.org",
        "interests": "nonlinear PDE analysis: well-posedness, regularity, Schrödinger and "
        "reaction-diffusion equations",
        "categories": "math.AP",
        "timezone": "Europe/Berlin",
    },
    {
        "email": "grace@example.org",
        "interests": "model-based reinforcement learning and learning-based control of "
        "nonlinear systems",
        "categories": "cs.LG,eess.SY",
        "timezone": "America/New_York",
    },
    {
        "email": "alan@example.org",
        "interests": "graph neural networks - spectral filters, continuous-depth / "
        "diffusion-based GNNs",
        "categories": "cs.LG",
        "timezone": "Asia/Tokyo",
    },
    # An address alone: the day's trending papers.
    {"email": "hedy@example.org", "timezone": "Europe/Vienna"},
]


@dataclass
class DemoResult:
    ingest: IngestReport
    subscribers_added: list[str]
    send: SendReport
    outbox: Path
    html_files: list[Path] = field(default_factory=list)


def run_demo(settings: Settings, edition: date | None = None) -> DemoResult:
    """Create the database, ingest the bundled papers, add four sample subscribers (one
    with an address alone, who gets the trending papers) and send
    today's edition into the file outbox. Safe to run again: nothing is duplicated."""
    if not settings.transport.startswith("outbox:"):
        # The demo's subscribers are example addresses: never hand them to a mail server.
        settings = dataclasses.replace(settings, transport=DEFAULT_OUTBOX)
    edition = edition or date.today()
    with open_store(settings) as store:
        ingest = ingest_path(store, sample_papers_path())
        added = []
        for sample in SAMPLE_SUBSCRIBERS:
            try:
                add_subscriber(store, settings, **sample, consent_source="demo")
                added.append(sample["email"])
            except DuplicateSubscriber:
                pass
        transport = transport_from_url(settings.transport, settings)
        report = send_edition(
            store,
            settings,
            edition,
            SendOptions(to=[s["email"] for s in SAMPLE_SUBSCRIBERS]),
            transport=transport,
        )
    outbox = Path(transport.directory)  # type: ignore[attr-defined]
    html = sorted((outbox / edition.isoformat()).glob("*.html"))
    return DemoResult(ingest, added, report, outbox, html)
