"""Rendering speed: emails rendered from a template inlined once per run, against premailer
run on every full email, side by side in the same run.

    python benchmarks/render.py [--subscribers 40] [--rounds 5]

For editions of 10 and 25 papers (drawn from the bundled sample), prints milliseconds of
CPU per email (HTML and text parts, signed links included) both ways, and their ratio.
Both ways share one renderer whose papers are already prepared, so the figures are the
cost of one more email in a run; the work done once per run (inlining the template,
cleaning a paper's text for display) is printed apart. So is the part of each email that
both ways spend alike on its links (three signed tokens, whatever the number of papers) and
the rest of its data, with the ratio of what remains: turning the same data into the two
parts. Each figure is the median of several rounds, taken in turn; CPU time rather than
wall time, so that other processes on the machine weigh on neither way.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import date

from newsletter.mail.render import HTML_TEMPLATE, TEXT_TEMPLATE, Renderer, inline_css
from newsletter.models import Paper, Pick, Status, Subscriber
from newsletter.settings import Settings
from newsletter.sources.sample_page import parse_sample_page
from newsletter.store.ingest import sample_papers_path
from newsletter.tokens import LinkSigner

EDITION = date(2026, 3, 2)
Emails = list[tuple[Subscriber, list[Pick]]]


def inlined_once(renderer: Renderer, subscriber: Subscriber, picks: list[Pick]) -> None:
    renderer.render(subscriber, picks, EDITION)


def premailer_each(renderer: Renderer, subscriber: Subscriber, picks: list[Pick]) -> None:
    context = renderer.context(subscriber, picks, EDITION)
    inline_css(renderer.env.get_template(HTML_TEMPLATE).render(context), renderer.css)
    renderer.env.get_template(TEXT_TEMPLATE).render(context)


def links_only(renderer: Renderer, subscriber: Subscriber, picks: list[Pick]) -> None:
    renderer.context(subscriber, picks, EDITION)


WAYS = (inlined_once, premailer_each, links_only)


def ms_per_email(
    way: Callable[[Renderer, Subscriber, list[Pick]], None], renderer: Renderer, emails: Emails
) -> float:
    start = time.process_time()
    for subscriber, picks in emails:
        way(renderer, subscriber, picks)
    return (time.process_time() - start) * 1000 / len(emails)


def ms(work: Callable[[], object]) -> float:
    start = time.process_time()
    work()
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    papers = [
        p for p in parse_sample_page(sample_papers_path().read_text()) if isinstance(p, Paper)
    ]
    renderer = Renderer(
        Settings(from_address="Daily Papers <papers@example.org>"),
        LinkSigner("benchmark-key-0123456789"),
    )
    inlining = ms(lambda: renderer.html_template)
    cards = ms(lambda: [renderer.card(p) for p in papers]) / len(papers)
    print(f"once per run: inlining the template {inlining:.1f} ms, each paper {cards:.2f} ms")

    rng = random.Random(7)
    warm = [(_subscriber(0), [Pick(papers[0], 0.5, "warm-up")])]
    for way in WAYS:  # first-use caches, not timed
        ms_per_email(way, renderer, warm)

    print(f"ms per email: median of {args.rounds} rounds of {args.subscribers} emails")
    print(
        f"{'papers':>6}  {'inlined once':>12}  {'premailer each':>14}  {'ratio':>6}"
        f"  {'links, both ways':>16}  {'ratio without links':>19}"
    )
    for size in (10, 25):
        emails = [
            (
                _subscriber(i),
                [Pick(p, 0.5, "matches your interests: graphs") for p in rng.sample(papers, size)],
            )
            for i in range(args.subscribers)
        ]
        rounds = [[ms_per_email(way, renderer, emails) for way in WAYS] for _ in range(args.rounds)]
        ours, theirs, links = (statistics.median(r[i] for r in rounds) for i in range(len(WAYS)))
        print(
            f"{size:>6}  {ours:>12.2f}  {theirs:>14.2f}  {theirs / ours:>5.1f}x"
            f"  {links:>16.2f}  {(theirs - links) / (ours - links):>18.1f}x"
        )


def _subscriber(n: int) -> Subscriber:
    return Subscriber(
        id=n,
        email=f"reader{n}@example.org",
        status=Status.ACTIVE,
        timezone="UTC",
        delivery_hour=7,
        max_papers=25,
        interests="graph neural networks, nonlinear PDE",
    )


if __name__ == "__main__":
    main()
