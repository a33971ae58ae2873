"""End to end in a real browser: Playwright drives Debian's Chromium, on a phone-sized
screen with JavaScript turned off, against ``newsletter serve`` started on loopback; mail
goes through the loopback SMTP server and editions are sent with send_edition."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from newsletter.models import Status
from newsletter.sending.delivery import send_edition
from newsletter.settings import Settings
from newsletter.subscribers.profiles import add_subscriber

from .conftest import SECRET, SENDER, Mailbox, free_port, make_paper

TODAY = date.today()
PHONE = {"width": 390, "height": 844}
GNN = "graph neural networks, spectral filters"


@dataclass
class Site:
    url: str
    settings: Settings


@pytest.fixture
def site(settings, smtp_server, tmp_path) -> Iterator[Site]:
    """``newsletter serve`` in a subprocess, sending through the loopback SMTP server."""
    url = f"http://127.0.0.1:{free_port()}"
    settings = replace(settings, transport=smtp_server.url, base_url=url)
    env = {
        **os.environ,
        "NEWSLETTER_DB": str(settings.db),
        "NEWSLETTER_TRANSPORT": settings.transport,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_FROM": SENDER,
        "NEWSLETTER_BASE_URL": url,
    }
    port = url.rsplit(":", 1)[1]
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "serve", "--port", port],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "newsletter serve did not start"
            try:
                httpx.get(f"{url}/site.css").raise_for_status()
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield Site(url, settings)
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def page(browser):
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    yield context.new_page()
    context.close()


def wait_for_mail(box: Mailbox, count: int) -> list[EmailMessage]:
    deadline = time.monotonic() + 10
    while len(box.envelopes) < count:
        assert time.monotonic() < deadline, f"{len(box.envelopes)} of {count} emails arrived"
        time.sleep(0.02)
    return box.messages


def html_link(message: EmailMessage, purpose: str) -> str:
    html = message.get_body(("html",)).get_content()
    return re.search(rf'href="(http://127\.0\.0\.1:\d+/{purpose}/[^"]+)"', html).group(1)


def feedback_link(message: EmailMessage, paper_id: str, signal: str) -> str:
    """The "more/less like this" link of one paper card in the HTML part."""
    part = message.get_body(("html",)).get_content()
    links = re.findall(r'href="(http://127\.0\.0\.1:\d+/feedback/[^"]+)"', part)
    [link] = [
        url
        for url in map(html.unescape, links)
        if parse_qs(urlsplit(url).query) == {"paper": [paper_id], "signal": [signal]}
    ]
    return link


def assert_fits_a_phone_and_labels_every_field(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    fields = page.locator("input:not([type=hidden]), select, textarea")
    for i in range(fields.count()):
        assert fields.nth(i).evaluate("e => e.labels.length") == 1


def test_subscribe_confirm_then_change_interests_from_an_edition(site, page, store, smtp_server):
    store.save_paper(make_paper(1))
    store.save_paper(make_paper(2))
    store.save_paper(
        make_paper(
            3,
            title="Regularity for nonlinear Schrödinger equations",
            abstract="We prove well-posedness of nonlinear Schrödinger equations.",
        )
    )

    page.goto(site.url)
    assert_fits_a_phone_and_labels_every_field(page)
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_label("Your research interests").fill(GNN)
    page.get_by_role("button", name="Subscribe").click()
    assert page.get_by_role("heading", name="Check your inbox").is_visible()

    [confirmation] = wait_for_mail(smtp_server, 1)
    page.goto(html_link(confirmation, "confirm"))
    assert store.get_subscriber("ada@example.org").status == Status.PENDING
    page.get_by_role("button", name="Confirm my subscription").click()
    assert page.get_by_role("heading", name="You are subscribed").is_visible()
    assert store.get_subscriber("ada@example.org").status == Status.ACTIVE

    send_edition(store, site.settings, TODAY)
    edition = wait_for_mail(smtp_server, 2)[1]
    page.goto(html_link(edition, "preferences"))
    assert_fits_a_phone_and_labels_every_field(page)
    assert "Paper number" in page.locator("section", has_text="Recently sent").inner_text()
    page.get_by_label("Your research interests").fill("nonlinear Schrödinger equations")
    page.get_by_role("button", name="Save my preferences").click()

    assert page.get_by_role("status").inner_text().startswith("Saved.")
    preview = page.get_by_role("region", name="Today's papers for your new profile")
    assert preview.get_by_role("link").all_inner_texts() == [
        "Regularity for nonlinear Schrödinger equations"
    ]
    assert store.get_subscriber("ada@example.org").interests == "nonlinear Schrödinger equations"


def test_unsubscribe_from_the_footer_link_then_resubscribe(
    site, page, store, settings, smtp_server
):
    store.save_paper(make_paper(1))
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    send_edition(store, site.settings, TODAY)
    [edition] = wait_for_mail(smtp_server, 1)

    page.goto(html_link(edition, "unsubscribe"))
    assert page.get_by_role("button").all_inner_texts() == ["Unsubscribe"]
    assert store.get_subscriber(ada.id).status == Status.ACTIVE  # a GET changes nothing
    page.get_by_role("button", name="Unsubscribe").click()

    assert page.get_by_role("heading", name="You are unsubscribed").is_visible()
    assert store.get_subscriber(ada.id).status == Status.UNSUBSCRIBED
    page.get_by_role("button", name="Resubscribe").click()
    assert page.get_by_role("heading", name="Welcome back").is_visible()
    assert store.get_subscriber(ada.id).status == Status.ACTIVE


def test_less_like_this_from_an_edition_asks_then_records_the_signal(
    site, page, store, settings, smtp_server
):
    store.save_paper(make_paper(1, id="astro-ph/0601001", title="Graph neural networks in the sky"))
    store.save_paper(make_paper(2))
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    send_edition(store, site.settings, TODAY)
    [edition] = wait_for_mail(smtp_server, 1)

    page.goto(feedback_link(edition, "astro-ph/0601001", "less"))
    assert page.get_by_role("heading", name="Fewer papers like this?").is_visible()
    assert "Graph neural networks in the sky" in page.locator("main").inner_text()
    assert store.feedback() == {}  # a GET changes nothing
    page.get_by_role("button", name="Yes, fewer like this").click()

    assert page.get_by_role("heading", name="Thank you").is_visible()
    assert store.feedback() == {ada.id: {"astro-ph/0601001": -1}}
    page.goto(feedback_link(edition, "2501.00002", "more"))
    page.get_by_role("button", name="Yes, more like this").click()
    assert store.feedback() == {ada.id: {"astro-ph/0601001": -1, "2501.00002": 1}}
