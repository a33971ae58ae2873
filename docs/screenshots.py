"""Take the README's screenshots of the web app (the home page and its "See what you would
get", preferences, unsubscribe).

    .venv/bin/python docs/screenshots.py

Builds the demo in a temporary directory (with the recorded Hugging Face papers of the tests
ingested too, for their upvotes), serves it on loopback and photographs the pages with
Debian's Chromium through Playwright, phone-sized, into docs/ (the home page down to its
first trending papers, the preferences page after a change of interests, as far as one
screen goes).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from newsletter.demo import run_demo
from newsletter.settings import Settings
from newsletter.store.database import Store
from newsletter.store.ingest import ingest_path
from newsletter.tokens import link_signer
from newsletter.web import create_app

DOCS = Path(__file__).resolve().parent
HF_DAILY = DOCS.parent / "tests" / "fixtures" / "hf-daily-papers.json"
VIEWPORT = {"width": 420, "height": 760}
#: The home page down to its first trending papers.
HOME_HEIGHT = 1640


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            db=Path(tmp) / "newsletter.db",
            transport=f"outbox:{tmp}/outbox",
            base_url=f"http://127.0.0.1:{port}",
        )
        run_demo(settings)
        with Store(settings.db) as store:
            ingest_path(store, HF_DAILY)
            signer = link_signer(settings, store, real_send=False)
            alan = store.get_subscriber("alan@example.org")
            preferences = signer.path("preferences", alan)
            unsubscribe = signer.path("unsubscribe", alan)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = browser.new_page(viewport=VIEWPORT, java_script_enabled=False)
            page.goto(settings.base_url)
            page.screenshot(
                path=DOCS / "web-home.png",
                clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": HOME_HEIGHT},
                full_page=True,
            )
            page.get_by_label("Interests to try").fill("neural networks, kernels, PDEs")
            page.get_by_role("button", name="Show my papers").click()
            page.locator(".try").screenshot(path=DOCS / "web-try.png")
            page.goto(settings.base_url + preferences)
            page.get_by_label("Your research interests").fill(
                "graph neural networks, message passing, oversmoothing"
            )
            page.get_by_role("button", name="Save my preferences").click()
            page.screenshot(path=DOCS / "web-preferences.png")
            page.goto(settings.base_url + unsubscribe)
            page.locator(".page").screenshot(path=DOCS / "web-unsubscribe.png")
            browser.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
