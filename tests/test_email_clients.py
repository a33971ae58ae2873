"""The email judged by tools nobody here wrote: the caniemail support database (Node), a
spam filter (SpamAssassin, local rules) and a browser engine (Chromium), on a real
rendered edition. Screenshots go to test-artifacts/email/ (ignored by git)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REQUIRE_TOOLS, require_tool
from .test_email import html_of, sample_message

NODE_CHECKS = Path(__file__).resolve().parent / "node"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "email"
CLIENTS = ["gmail.*", "outlook.*", "apple-mail.*"]

#: caniemail features the email uses although some of those clients lack them, because
#: each degrades safely there. The test fails on any other, and on an entry no longer needed.
ALLOWED_FEATURES = {
    "@media": "only the phone layout (narrower padding) and the dark-mode colours are in "
    "@media rules; a client without them shows the light, fluid layout, which already fits "
    "any width (max-width container, a 600 px ghost table for Outlook).",
    "<body> element": "clients that drop <body> lose its background colour and margin only; "
    "the wrapper table carries the same background.",
    "role attribute": 'role="presentation" only tells screen readers that the tables are '
    "layout; a client that strips it changes nothing visible.",
    "display:none": "hides the preheader; Gmail's app for other accounts ignores it but "
    "honours max-height:0 with overflow:hidden, which hide it too.",
    "overflow": "the preheader's second way to hide; the Outlooks that ignore it honour "
    "display:none or mso-hide:all.",
    "word-break": "break-word lets a word longer than a phone is wide (a URL, an identifier) "
    "wrap instead of widening the page; Windows Mail, the one client here without it, is a "
    "desktop app, where such a word at worst runs past the 600 px column.",
}
UNSUPPORTED = re.compile(r"^`(?P<feature>.+)` is not supported by `(?P<client>[\w.-]+)`$")


def missing(message: str) -> None:
    if REQUIRE_TOOLS:
        pytest.fail(message + " (NEWSLETTER_REQUIRE_TOOLS=1: .ci/run must install it)")
    pytest.skip(message)


def test_html_passes_caniemail_for_gmail_outlook_and_apple_mail(settings):
    node = require_tool("node")
    if not (NODE_CHECKS / "node_modules" / "@jsx-email" / "doiuse-email").is_dir():
        missing("@jsx-email/doiuse-email is not installed (npm ci in tests/node)")
    html = html_of(sample_message(settings))
    checked = subprocess.run(
        [node, str(NODE_CHECKS / "caniemail.mjs"), *CLIENTS],
        input=html,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(checked.stdout)

    errors = [UNSUPPORTED.match(error) for error in result.get("errors", [])]
    assert all(errors), result["errors"]
    refused = {(e["feature"], e["client"]) for e in errors if e["feature"] not in ALLOWED_FEATURES}
    assert not refused, sorted(refused)
    assert {e["feature"] for e in errors} == set(ALLOWED_FEATURES)  # no stale allowance
    assert {e["client"].split(".")[0] for e in errors} <= {"gmail", "outlook", "apple-mail"}


def test_spamassassin_scores_a_real_email_well_under_its_threshold(settings, tmp_path):
    spamassassin = require_tool("spamassassin")
    raw = sample_message(settings, "<2026-03-02.1f2e3d4c5b6a79881726@example.org>").as_bytes()
    checked = subprocess.run(
        # Local rules only (no DNS or network tests); HOME keeps its files in tmp_path.
        [spamassassin, "--local", "--test-mode"],
        input=raw,
        capture_output=True,
        check=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    report = checked.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: (\w+), score=(-?[\d.]+) required=([\d.]+)", report, re.M)
    assert status, report[-2000:]
    verdict, score, required = status.group(1), float(status.group(2)), float(status.group(3))
    details = report[report.find("Content analysis details") :]
    assert verdict == "No" and required == 5.0
    assert score < 1.0, details


@pytest.mark.parametrize(("width", "padding"), [(375, "16px"), (600, "16px"), (800, "28px")])
def test_chromium_shows_the_email_without_horizontal_scrolling(settings, browser, width, padding):
    html = html_of(sample_message(settings))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": width, "height": 800}, color_scheme=scheme)
        try:
            page.set_content(html)
            sizes = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            page.screenshot(path=str(ARTIFACTS / f"edition-{width}-{scheme}.png"), full_page=True)
            assert sizes[0] <= sizes[1], f"{scheme}: content {sizes[0]} px wide in {width} px"
            cards = page.eval_on_selector_all(
                ".card",
                "cards => cards.map(c => [c.getBoundingClientRect().right,"
                " getComputedStyle(c).paddingLeft])",
            )
            assert len(cards) == 4 and all(right <= width for right, _ in cards)
            # The phone layout (a @media rule) narrows the padding below 620 px.
            assert {shown for _, shown in cards} == {padding}
            background = page.eval_on_selector(
                ".container", "c => getComputedStyle(c).backgroundColor"
            )
            expected = "rgb(31, 41, 55)" if scheme == "dark" else "rgb(255, 255, 255)"
            assert background == expected
        finally:
            page.close()
