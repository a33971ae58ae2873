"""A whole edition at scale, measured: rank, render, hand-off to a local SMTP sink, and
through a relay API on loopback, with and without batches.

    python benchmarks/edition.py [--subscribers 2000] [--papers 300] [--shards 2]
        [--connections 1] [--semantic on|off] [--embed-sample 1000]
        [--relay postmark|resend|off] [--db postgresql://...] [--senders 2]
        [--senders-sink outbox|relay] [--json]

The workload, in a temporary database: ``--papers`` new papers (the bundled sample page
and the recorded feeds of ``tests/fixtures``, then variants of them with their own ids
and titles, whose abstracts run from one sentence to two abstracts' worth), and
``--subscribers`` active readers, each interested in one to three phrases of real paper
titles, with varied timezones, delivery hours and papers per email; some with arXiv
categories (a few as a filter), muted terms, a followed author or a "more like this".

With ``--semantic on`` (the default install's ranking), the ingest's embedding step runs
first, in a process of its own, with the real model: every paper, and the interests of the
first ``--embed-sample`` readers (its seconds and peak are reported, and the whole list's
time extrapolated from them). Every other reader's interests then get the sample's vectors
in turn, stored under the digest of their own text, as if the step had embedded them all:
the arithmetic of the ranking does not depend on the values, and their distribution is the
model's; embedding 100,000 profiles for real would take some ten minutes.

The edition is sent exactly as the worker sends it: ``Worker.deliver_due`` at a moment
when every reader's local delivery hour has come on the same date (the whole list due at
once), holding the sending lock, with the ranking of ``--semantic``, through SMTP
to an aiosmtpd server on loopback that accepts and discards every message. That server
runs in a process of its own, and so does the sender, so that the peak resident memory
(``getrusage`` of the sending process, imports included; its SMTP courier, forked from it,
shares its memory and is not counted again) and the stage times are the sender's alone.
The stages come from ``SendReport.stats``: ``rank`` is planning the
edition; ``send`` is the delivery loop, within which every email is rendered (``render``:
its HTML with the inlined stylesheet and its text part) and composed (``compose``: the MIME
message) while the previous one is on the wire, and claimed and recorded in the ledger.

Two baselines in the same run, on the same server: the raw throughput of the sink (an
email of the edition of median size, flattened once, sent again and again with plain
``smtplib``, over as
many connections as the edition uses; the better of a run before and one after the
edition), and premailer run on every full email (a sample of the edition's emails rendered
from the template that is not inlined, then inlined by premailer, as the code did before
inlining once per run). The product's rates are reported as ratios to these.

``--shards N`` then sends the same edition again, from a fresh copy of the database, as N
worker processes side by side (``--shard i/N``), and compares the wall time with one.

``--db URL`` (a PostgreSQL server's, whose user may create databases; see
``python -m tests.pgserver start DIR`` for a throwaway one) then sends the same edition, copied into a
fresh database of that server (``db copy``) each time, by one sender process and by
``--senders K`` sender processes side by side on the whole list (they share it by their
claims), and, beside them, by one sender on SQLite, all to the file outbox in a tmpfs
directory (a sink that is not the limit: each sender writes its own files) or, with
``--senders-sink relay``, through Postmark's batch API to the relay sink. Reported: the
wall time of each, the speed-up of K senders over one, the time each message spent in the
ledger (claims and records), and, when the server runs on this machine, the CPU time the
server spent per message (its processes' and their reaped children's): what bounds the
senders one server can carry.

``--relay postmark`` (the default; or ``resend``; ``off``) then sends the same edition, from a fresh
copy of the database each time, through that relay's API (``postmark://TOKEN@?base_url=``)
to a loopback HTTP sink in a process of its own that answers every message as accepted,
in the provider's shape: once in the relay's batches (its largest: 500 for Postmark, 100
for Resend) and once one message per request (``?batch_size=1``, as delivery did before
it batched). The sink keeps every request body; beside each run, a plain ``httpx.Client``
sends the same number of POSTs of the same bodies, with the same headers, to the same
sink, one after the other on one connection as the transport does: the raw baseline.
``--relay-latency MS`` makes the sink answer each request that much later, as a relay
across the network would.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import re
import resource
import shutil
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from email.policy import SMTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as Server
from aiosmtpd.smtp import Envelope, Session

from newsletter.mail.render import HTML_TEMPLATE, TEXT_TEMPLATE, Renderer, inline_css
from newsletter.models import Paper, Shard, Status, title_key, to_utc_iso
from newsletter.ranking import embeddings, semantic
from newsletter.ranking.engine import STOP_WORDS
from newsletter.sending.edition import plan_edition
from newsletter.sending.locking import SendingLock
from newsletter.sending.report import SendStats
from newsletter.sending.worker import Worker
from newsletter.settings import Settings
from newsletter.store import Store, open_store
from newsletter.store.copy import copy_between
from newsletter.store.database import SQLiteStore
from newsletter.store.ingest import parse_text, sample_papers_path
from newsletter.store.postgres import close_pools
from newsletter.tokens import LinkSigner

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
#: Readers' timezones: at 20:00 UTC every one of them has passed their delivery hour on the
#: same local date, so one worker tick sends the whole list one edition.
TIMEZONES = [
    "Pacific/Honolulu",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Sao_Paulo",
    "UTC",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Helsinki",
    "Africa/Nairobi",
]
DELIVERY_HOURS = [6, 7, 7, 7, 8, 9]
MAX_PAPERS = [3, 5, 5, 5, 5, 7, 10]
SENDER = "Daily Papers <papers@example.org>"
RELAY_TOKEN = "benchmark-relay-token"
#: The batch endpoint of each relay, and how a message of its request names its recipient.
RELAY_PATHS = {"postmark": "/email/batch", "resend": "/emails/batch"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


# -- the workload -----------------------------------------------------------------------------


def base_papers() -> list[Paper]:
    """The bundled sample page and the recorded feeds (``tests/fixtures``), one
    paper per title."""
    paths = [sample_papers_path()]
    if FIXTURES.is_dir():
        paths += sorted(p for p in FIXTURES.iterdir() if p.suffix in (".xml", ".json"))
    papers: dict[str, Paper] = {}
    for path in paths:
        for record in parse_text(path.read_text(encoding="utf-8"), name=path.name):
            if isinstance(record, Paper):
                papers.setdefault(title_key(record.title), record)
    return list(papers.values())


def synthetic_papers(
    base: list[Paper], count: int, now: datetime, rng: random.Random
) -> list[Paper]:
    """``count`` new papers: the base papers, then variants (the first part of one title
    with the last part of another; the first sentences of one abstract with sentences of
    another), each with its own id and title. Papers without authors or categories borrow
    those of one that has them."""
    donors = [p for p in base if p.authors and p.categories] or base
    titles = {title_key(p.title) for p in base}
    papers = []
    for n in range(count):
        paper, other = base[n % len(base)], rng.choice(base)
        title, abstract = paper.title, paper.abstract
        if n >= len(base):
            while title_key(title) in titles:
                title = f"{_title_head(paper.title)}: {_title_tail(rng.choice(base).title)}"
            titles.add(title_key(title))
            own, more = _SENTENCE.split(paper.abstract), _SENTENCE.split(other.abstract)
            abstract = " ".join(own[: rng.randint(1, len(own))] + more[: rng.randint(0, len(more))])
        donor = rng.choice(donors)
        papers.append(
            replace(
                paper,
                id=paper.id if n < len(base) else f"bench.{n:06d}",
                title=title,
                abstract=abstract,
                authors=paper.authors or donor.authors,
                categories=paper.categories or donor.categories,
                upvotes=paper.upvotes or rng.choice([None, None, None, None, 3, 12, 40]),
                published_at=to_utc_iso(now - timedelta(hours=rng.uniform(2, 72))),
                first_seen_at=to_utc_iso(now - timedelta(minutes=rng.uniform(5, 600))),
            )
        )
    return papers


def _title_head(title: str) -> str:
    return title.split(":")[0].strip()


def _title_tail(title: str) -> str:
    return title.split(":")[-1].strip()


def interest_phrases(papers: list[Paper]) -> list[str]:
    """Two- to four-word phrases of the papers' titles that begin and end with a content
    word: "graph neural networks", "nonlinear Schrödinger equations", ..."""
    phrases = set()
    for paper in papers:
        for part in re.split(r"[:,;()?]| - | via | for | of | with | in | and ", paper.title):
            words = part.split()
            for size in (2, 3, 4):
                for start in range(len(words) - size + 1):
                    chunk = words[start : start + size]
                    if _content_word(chunk[0]) and _content_word(chunk[-1]):
                        phrases.add(" ".join(chunk))
    return sorted(phrases)


def _content_word(word: str) -> bool:
    return word.isalpha() and len(word) > 2 and word.lower() not in STOP_WORDS


def add_subscribers(store: Store, count: int, papers: list[Paper], rng: random.Random) -> None:
    """``count`` active readers, each interested in one to three title phrases; some with
    categories (a few as a filter), muted terms, followed authors or a "more like this"."""
    phrases = interest_phrases(papers)
    categories = sorted({c for p in papers for c in p.categories})
    authors = sorted({a for p in papers for a in p.authors})
    with store.transaction():
        for n in range(count):
            subscriber = store.add_subscriber(
                f"reader{n:06d}@example.org",
                status=Status.ACTIVE,
                timezone=rng.choice(TIMEZONES),
                delivery_hour=rng.choice(DELIVERY_HOURS),
                max_papers=rng.choice(MAX_PAPERS),
                interests=", ".join(rng.sample(phrases, rng.randint(1, 3))),
                categories=rng.sample(categories, rng.randint(1, 2)) if rng.random() < 0.3 else [],
                muted_terms=["survey"] if rng.random() < 0.05 else [],
                consent_source="benchmark",
            )
            changes: dict[str, object] = {}
            if subscriber.categories and rng.random() < 0.1:
                changes["categories_only"] = True
            if authors and rng.random() < 0.02:
                changes["followed_authors"] = [rng.choice(authors)]
            if changes:
                store.update_subscriber(subscriber.id, **changes)
            if rng.random() < 0.01:
                store.set_feedback(subscriber.id, rng.choice(papers).id, 1)


def build_database(path: Path, subscribers: int, papers: int, seed: int) -> None:
    rng = random.Random(seed)
    with SQLiteStore(path) as store:  # SQLite itself: its log is checkpointed
        with store.transaction():
            new = synthetic_papers(base_papers(), papers, datetime.now(UTC), rng)
            for paper in new:
                store.save_paper(paper)
        add_subscribers(store, subscribers, new, rng)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- the embedding step (--semantic on) -------------------------------------------------------


@dataclass
class EmbedRun:
    papers: int
    papers_seconds: float
    profiles: int
    profiles_seconds: float
    peak_rss_mb: float


def _embed_step(settings: Settings, sample: int, results: Queue) -> None:
    """A process of its own: the ingest's embedding step with the real model, for every
    paper and the first ``sample`` readers."""
    with open_store(settings.db) as store:
        started = time.perf_counter()
        papers = embeddings.embed_new_papers(store, settings)
        embedded = time.perf_counter()
        readers = store.list_subscribers(Status.ACTIVE)[:sample]
        profiles = embeddings.embed_profiles(store, settings, readers)
        finished = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results.put(EmbedRun(papers, embedded - started, profiles, finished - embedded, peak))


def embed_workload(context: SpawnContext, settings: Settings, sample: int) -> EmbedRun:
    """Run the embedding step on ``settings.db``, then give every reader beyond the sample
    the sample's vectors in turn, under the digest of their own interests."""
    results = context.Queue()
    process = context.Process(target=_embed_step, args=(settings, sample, results))
    process.start()
    run = results.get(timeout=3600)
    process.join()
    with SQLiteStore(settings.db) as store:
        readers = store.list_subscribers(Status.ACTIVE)
        stored = store.embeddings(
            "profile_embeddings",
            "subscriber_id",
            semantic.MODEL_NAME,
            [r.id for r in readers[:sample]],
        )
        vectors = [stored[r.id][1] for r in readers[:sample]]
        rest = readers[sample:]
        for start in range(0, len(rest), embeddings.PROFILE_CHUNK):
            store.save_embeddings(
                "profile_embeddings",
                "subscriber_id",
                semantic.MODEL_NAME,
                [
                    (r.id, embeddings.text_digest(r.interests or ""), vectors[n % len(vectors)])
                    for n, r in enumerate(rest[start : start + embeddings.PROFILE_CHUNK], start)
                ],
            )
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return run


# -- the SMTP sink ----------------------------------------------------------------------------


class _Counter:
    """An aiosmtpd handler that accepts every message, counts it and forgets it."""

    def __init__(self) -> None:
        self.messages = 0
        self.recipients: set[str] = set()

    async def handle_DATA(self, server: Server, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        self.recipients.update(envelope.rcpt_tos)
        return "250 2.0.0 Ok: discarded"


def _sink(port: int, control: Connection) -> None:
    """The sink's process: serve until told to stop; on "count", answer (messages,
    distinct recipients) since the last count."""
    counter = _Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    control.send("ready")
    while (command := control.recv()) != "stop":
        assert command == "count"
        control.send((counter.messages, len(counter.recipients)))
        counter.messages, counter.recipients = 0, set()
    controller.stop()


class SinkProcess:
    """A sink serving on a free loopback port, in a process of its own (``serve``),
    controlled through a pipe."""

    serve: Callable[..., None]

    def __init__(self, context: SpawnContext, *options: object):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.control, theirs = context.Pipe()
        self.process = context.Process(
            target=self.serve, args=(self.port, theirs, *options), daemon=True
        )
        self.process.start()
        if self.control.recv() != "ready":
            raise RuntimeError(f"the {type(self).__name__} did not start")

    def stop(self) -> None:
        self.control.send("stop")
        self.process.join(10)


class Sink(SinkProcess):
    """The aiosmtpd sink."""

    serve = staticmethod(_sink)

    def count(self) -> tuple[int, int]:
        """(messages, distinct recipients) received since the last count."""
        self.control.send("count")
        return self.control.recv()


# -- the relay sink ---------------------------------------------------------------------------


@dataclass
class Posted:
    """A request the relay sink received: its path, headers and body, and how many
    messages it carried."""

    path: str
    headers: dict[str, str]
    body: bytes
    messages: int


def _relay_sink(port: int, control: Connection, latency: float = 0.0) -> None:
    """The relay sink's process: Postmark's and Resend's batch endpoints over HTTP/1.1
    (keep-alive), every message accepted and answered as the provider does, ``latency``
    seconds after the request came (a round trip to a relay far away). On "count",
    on "take", answer the requests received since the last take and the number of their
    distinct recipients, and forget them."""
    lock = threading.Lock()
    posted: list[Posted] = []
    recipients: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # As servers in front of an API do: an answer is not held back for an ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            items = json.loads(body)
            if self.path == RELAY_PATHS["postmark"]:
                to = [item["To"] for item in items]
                answer: Any = [
                    {"To": t, "ErrorCode": 0, "MessageID": f"pm-{n}", "Message": "OK"}
                    for n, t in enumerate(to)
                ]
            else:
                to = [item["to"][0] for item in items]
                answer = {"data": [{"id": f"re-{n}"} for n in range(len(to))]}
            kept = {
                k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host")
            }
            with lock:
                posted.append(Posted(self.path, kept, body, len(items)))
                recipients.update(to)
            reply = json.dumps(answer).encode()
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    control.send("ready")
    while (command := control.recv()) != "stop":
        assert command == "take"
        with lock:
            control.send((list(posted), len(recipients)))
            posted.clear()
            recipients.clear()
    server.shutdown()


class RelaySink(SinkProcess):
    """The relay sink."""

    serve = staticmethod(_relay_sink)

    def url(self, relay: str, batch_size: int | None = None) -> str:
        query = f"base_url=http://127.0.0.1:{self.port}"
        if batch_size is not None:
            query += f"&batch_size={batch_size}"
        return f"{relay}://{RELAY_TOKEN}@?{query}"

    def take(self) -> tuple[list[Posted], int]:
        """The requests received since the last take (which the sink forgets), and their
        distinct recipients."""
        self.control.send("take")
        return self.control.recv()


# -- the edition, in worker processes ---------------------------------------------------------


@dataclass
class ShardRun:
    shard: str
    started: float
    finished: float
    peak_rss_mb: float
    stats: dict[str, float | int]
    counts: dict[str, int]
    #: Whether the semantic model's runtime was loaded in the process at any point.
    model_loaded: bool = False


def _send_shard(
    settings: Settings, shard: Shard, moment: datetime, start: Barrier, results: Queue
) -> None:
    """A worker process: the worker's delivery tick for ``shard``, under its lock."""
    worker = Worker(settings, clock=lambda: moment, shard=shard)
    with SendingLock(settings.db, shard):
        start.wait()  # every process has imported everything and holds its lock
        started = time.monotonic()
        reports = worker.deliver_due()
        finished = time.monotonic()
    stats = SendStats()
    counts: dict[str, int] = {}
    for report in reports:
        for name, value in report.stats.to_dict().items():
            setattr(stats, name, getattr(stats, name) + value)
        for status, n in report.counts.items():
            counts[status] = counts.get(status, 0) + n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    loaded = "onnxruntime" in sys.modules  # imported only when the runtime is loaded
    results.put(ShardRun(str(shard), started, finished, peak, stats.to_dict(), counts, loaded))


def send_edition_in_processes(
    context: SpawnContext,
    settings: Settings,
    shards: int,
    moment: datetime,
    whole_list: bool = False,
) -> list[ShardRun]:
    """Start one worker process per shard (or, ``whole_list``, as many processes on the
    whole list, as senders on PostgreSQL run), let them all go at once, wait for them."""
    start, results = context.Barrier(shards + 1), context.Queue()
    processes = [
        context.Process(
            target=_send_shard,
            args=(
                settings,
                Shard(i, shards) if shards > 1 and not whole_list else Shard(),
                moment,
                start,
                results,
            ),
        )
        for i in range(shards)
    ]
    for process in processes:
        process.start()
    runs: list[ShardRun] = []
    try:
        start.wait(timeout=120)  # raises if a worker process failed before the start
        while len(runs) < shards:
            try:
                runs.append(results.get(timeout=1))
            except queue.Empty:
                if any(p.exitcode for p in processes):
                    raise RuntimeError("a worker process failed; its error is above") from None
    finally:
        for process in processes:
            if len(runs) < shards:  # failed: the others would wait for it forever
                process.terminate()
            process.join()
    return sorted(runs, key=lambda run: (run.shard, run.started))


# -- the baselines ----------------------------------------------------------------------------


def raw_smtp_rate(port: int, message: bytes, count: int, connections: int) -> float:
    """Messages per second that plain smtplib hands to the sink: one message, flattened
    once, sent ``count`` times over ``connections`` connections."""

    def send(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for _ in range(n):
                smtp.sendmail("papers@example.org", ["raw@example.org"], message)

    start = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(send, [count // connections] * connections))
    return count // connections * connections / (time.perf_counter() - start)


def premailer_ms_per_email(settings: Settings, edition: date, count: int) -> float:
    """Milliseconds per email to render a sample of the edition's emails (as they were
    sent: read back from the ledger) from the template that is not inlined and to inline
    each with premailer, as before inlining once per run; the text part too."""
    renderer = Renderer(settings, LinkSigner(settings.secret_key))
    with open_store(settings) as store:
        readers = store.list_subscribers(Status.ACTIVE)[:count]
        plan = plan_edition(store, settings, edition, readers)
    emails = [(s, plan[s.id]) for s in readers if plan.get(s.id)]
    for _, picks in emails:  # the cards of the papers, made once per run both ways
        for pick in picks:
            renderer.card(pick.paper)
    html, text = renderer.env.get_template(HTML_TEMPLATE), renderer.env.get_template(TEXT_TEMPLATE)
    start = time.perf_counter()
    for subscriber, picks in emails:
        context = renderer.context(subscriber, picks, edition)
        inline_css(html.render(context), renderer.css)
        text.render(context)
    if not emails:
        raise RuntimeError(f"none of the first {count} readers has papers in the edition")
    return (time.perf_counter() - start) * 1000 / len(emails)


def median_email(settings: Settings, edition: date) -> bytes:
    """An email of the edition of median size (of the first hundred readers'), flattened
    as SMTP sends it."""
    renderer = Renderer(settings, LinkSigner(settings.secret_key))
    with open_store(settings) as store:
        readers = store.list_subscribers(Status.ACTIVE)[:100]
        plan = plan_edition(store, settings, edition, readers)
    emails = [
        renderer.message(s, plan[s.id], edition, "<raw@example.org>").as_bytes(policy=SMTP)
        for s in readers
        if plan[s.id]
    ]
    return sorted(emails, key=len)[len(emails) // 2]


def raw_httpx_seconds(port: int, posted: list[Posted]) -> float:
    """Seconds that a plain ``httpx.Client`` takes to POST the same bodies, with the same
    headers, one after the other on one connection."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        start = time.perf_counter()
        for request in posted:
            client.post(
                request.path, content=request.body, headers=request.headers
            ).raise_for_status()
        return time.perf_counter() - start


def measure_relay(
    context: SpawnContext,
    settings: Settings,
    pristine: Path,
    moment: datetime,
    relay: str,
    latency: float,
    say: Callable[[str], None],
) -> dict:
    """The edition through ``relay``'s API to the relay sink, in its largest batches and
    one message a request, each beside the raw httpx baseline of the same requests."""
    sink = RelaySink(context, latency)
    modes: dict[str, dict] = {}
    try:
        for mode, batch_size in (("batched", None), ("unbatched", 1)):
            fresh_copy(pristine, settings.db)
            relayed = replace(settings, transport=sink.url(relay, batch_size))
            [run] = send_edition_in_processes(context, relayed, 1, moment)
            posted, recipients = sink.take()
            raw = raw_httpx_seconds(sink.port, posted)
            sink.take()
            modes[mode] = relay_figures(run, posted, recipients, raw)
            say(
                f"{relay} {mode}: {modes[mode]['send']['per_second']:.0f} messages/s in"
                f" {len(posted)} requests; raw httpx, the same requests: "
                f"{modes[mode]['raw_httpx']['messages_per_second']:.0f} messages/s"
            )
    finally:
        sink.stop()
    batched, unbatched = modes["batched"], modes["unbatched"]
    return {
        "relay": relay,
        "latency_ms": round(latency * 1000),
        **modes,
        "ratios": {
            "batched_vs_unbatched": round(
                batched["send"]["per_second"] / unbatched["send"]["per_second"], 2
            ),
            "raw_batched_vs_unbatched": round(
                batched["raw_httpx"]["messages_per_second"]
                / unbatched["raw_httpx"]["messages_per_second"],
                2,
            ),
        },
    }


def relay_figures(run: ShardRun, posted: list[Posted], recipients: int, raw: float) -> dict:
    stats = run.stats
    messages = sum(p.messages for p in posted)
    send_rate = messages / stats["deliver"] if stats["deliver"] else 0.0
    raw_rate = messages / raw if raw else 0.0
    return {
        "requests": len(posted),
        "messages": messages,
        "recipients": recipients,
        "request_mb": round(sum(len(p.body) for p in posted) / 1e6, 1),
        "counts": run.counts,
        "stages": {
            "rank_seconds": stats["rank"],
            "render_seconds": stats["render"],
            "compose_seconds": stats["compose"],
            "ledger_seconds": stats["ledger"],
            "wait_seconds": stats["wait"],
        },
        "send": {"seconds": stats["deliver"], "per_second": round(send_rate, 1)},
        "raw_httpx": {
            "seconds": round(raw, 3),
            "messages_per_second": round(raw_rate, 1),
            "requests_per_second": round(len(posted) / raw, 1) if raw else None,
        },
        "send_vs_raw": round(send_rate / raw_rate, 3) if raw_rate else None,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


# -- senders on PostgreSQL --------------------------------------------------------------------


def postgres_database(url: str, name: str, template: str | None = None) -> str:
    """A new database ``name`` on the server of ``url`` (a copy of ``template``); its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def postgres_cpu_seconds(url: str) -> float | None:
    """CPU seconds the server of ``url`` has used so far: its postmaster's and its live
    processes' (a backend that exited is counted in the postmaster's reaped children), or
    None when the server is not a process of this machine."""
    import psycopg

    with psycopg.connect(url) as conn:  # read while the backend lives: it exits on close
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        backend = int(row[0]) if row else 0
        try:
            status = Path(f"/proc/{backend}/status").read_text()
        except OSError:
            return None
    parent_line = re.search(r"^PPid:\s+(\d+)", status, re.M)
    if parent_line is None:
        return None
    postmaster = int(parent_line.group(1))
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(stat.parent.name), int(fields[1])
        if pid == postmaster:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif parent == postmaster and pid != backend:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def scale_figures(runs: list[ShardRun], cpu: float | None) -> dict:
    wall = max(r.finished for r in runs) - min(r.started for r in runs)
    messages = sum(int(r.stats["messages"]) for r in runs)
    ledger = sum(r.stats["ledger"] for r in runs)
    return {
        "senders": len(runs),
        "seconds": round(wall, 3),
        "messages": messages,
        "per_second": round(messages / wall, 1) if wall else None,
        "ledger_ms_per_message": round(ledger * 1000 / messages, 3) if messages else None,
        "server_cpu_ms_per_message": (
            round(cpu * 1000 / messages, 3) if cpu is not None and messages else None
        ),
        "runs": [
            {
                "seconds": round(r.finished - r.started, 3),
                "rank_seconds": r.stats["rank"],
                "send_seconds": r.stats["deliver"],
                "ledger_seconds": r.stats["ledger"],
                "messages": r.stats["messages"],
                "counts": r.counts,
            }
            for r in runs
        ],
    }


def measure_senders(
    context: SpawnContext,
    settings: Settings,
    pristine: Path,
    moment: datetime,
    url: str,
    senders: int,
    sink: str,
    say: Callable[[str], None],
) -> dict:
    """The edition by one sender on SQLite, then by one and by ``senders`` senders on
    PostgreSQL, each from a fresh copy, to a file outbox on tmpfs or (``sink`` "relay")
    through Postmark's batches to the relay sink."""
    shm = Path("/dev/shm")
    outbox = Path(tempfile.mkdtemp(prefix="edition-outbox-", dir=shm if shm.is_dir() else None))
    relay = RelaySink(context) if sink == "relay" else None
    if relay:
        to_outbox = replace(settings, transport=relay.url("postmark"))
        result: dict[str, Any] = {"sink": "relay sink (Postmark's batches of 500)"}
    else:
        to_outbox = replace(settings, transport=f"outbox:{outbox}")
        result = {"sink": f"file outbox in {outbox.parent}"}
    try:
        fresh_copy(pristine, settings.db)
        result["sqlite"] = scale_figures(
            send_edition_in_processes(context, to_outbox, 1, moment), None
        )
        say(f"SQLite, one sender: {result['sqlite']['seconds']:.1f} s")
        template = postgres_database(url, "edition_benchmark_template")
        copy_between(pristine, template)
        close_pools()  # a template must have no connections to be copied
        for count in sorted({1, senders}):
            shutil.rmtree(outbox)
            outbox.mkdir()
            if relay:
                relay.take()  # and forget
            target = postgres_database(
                url, f"edition_benchmark_{count}", "edition_benchmark_template"
            )
            on_postgres = replace(to_outbox, db=Path(target))
            before = postgres_cpu_seconds(url)
            runs = send_edition_in_processes(context, on_postgres, count, moment, whole_list=True)
            after = postgres_cpu_seconds(url)
            cpu = after - before if before is not None and after is not None else None
            figures = scale_figures(runs, cpu)
            with open_store(target) as store:
                figures["ledger_counts"] = store.deliveries.counts(moment.date().isoformat())
            close_pools()
            result[f"postgres_{count}"] = figures
            say(
                f"PostgreSQL, {count} sender(s): {figures['seconds']:.1f} s, "
                f"{figures['per_second']:.0f} messages/s, ledger "
                f"{figures['ledger_ms_per_message']} ms/message, server CPU "
                f"{figures['server_cpu_ms_per_message']} ms/message"
            )
    finally:
        shutil.rmtree(outbox, ignore_errors=True)
        if relay:
            relay.stop()
    one, many = result["postgres_1"], result[f"postgres_{senders}"]
    result["many"] = senders
    result["speedup"] = round(one["seconds"] / many["seconds"], 2)
    result["postgres_vs_sqlite"] = round(result["sqlite"]["seconds"] / one["seconds"], 2)
    return result


# -- the run ----------------------------------------------------------------------------------


def fresh_copy(pristine: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(pristine, db)


def measure(args: argparse.Namespace, say: Callable[[str], None]) -> dict:
    context = multiprocessing.get_context("spawn")
    today = datetime.now(UTC).date()
    moment = datetime.combine(today, clock_time(20), UTC)
    with tempfile.TemporaryDirectory(prefix="edition-benchmark-") as tmp:
        pristine, db = Path(tmp) / "pristine.db", Path(tmp) / "newsletter.db"
        start = time.perf_counter()
        build_database(pristine, args.subscribers, args.papers, args.seed)
        say(f"workload: {time.perf_counter() - start:.1f} s to build")
        embedded = None
        if args.semantic == "on":
            embedded = embed_workload(
                context, Settings(db=pristine, semantic="on"), args.embed_sample
            )
            say(
                f"embedding step: {embedded.papers} papers in {embedded.papers_seconds:.1f} s, "
                f"{embedded.profiles} profiles in {embedded.profiles_seconds:.1f} s, "
                f"peak {embedded.peak_rss_mb:.0f} MB"
            )
        sink = Sink(context)
        try:
            settings = Settings(
                db=db,
                transport=f"smtp://127.0.0.1:{sink.port}",
                from_address=SENDER,
                base_url="https://papers.example.org",
                secret_key="benchmark-secret-key-0123456789",
                semantic=args.semantic,
                send_connections=args.connections,
            )
            fresh_copy(pristine, db)
            message = median_email(settings, today)
            raw = [raw_smtp_rate(sink.port, message, args.raw_messages, args.connections)]
            sink.count()
            say(f"raw smtplib to the sink: {raw[0]:.0f} messages/s ({len(message)} bytes)")
            fresh_copy(pristine, db)
            [run] = send_edition_in_processes(context, settings, 1, moment)
            received = sink.count()
            say(
                f"edition: {run.finished - run.started:.1f} s, {run.counts}, peak RSS "
                f"{run.peak_rss_mb:.0f} MB, the sink received {received[0]:,} messages"
            )
            raw.append(raw_smtp_rate(sink.port, message, args.raw_messages, args.connections))
            sink.count()
            say(f"raw smtplib to the sink, after: {raw[1]:.0f} messages/s")
            premailer = premailer_ms_per_email(settings, today, args.premailer_emails)
            result = report(args, run, received, max(raw), premailer)
            if embedded:
                result["embedding"] = embedding_report(embedded, args.subscribers)
            if args.shards > 1:
                fresh_copy(pristine, db)
                runs = send_edition_in_processes(context, settings, args.shards, moment)
                result["shards"] = compare_shards(run, runs, sink.count())
        finally:
            sink.stop()
        if args.db:
            result["senders"] = measure_senders(
                context, settings, pristine, moment, args.db, args.senders, args.senders_sink, say
            )
        if args.relay != "off":
            result["relay"] = measure_relay(
                context, settings, pristine, moment, args.relay, args.relay_latency / 1000, say
            )
    return result


def report(
    args: argparse.Namespace,
    run: ShardRun,
    received: tuple[int, int],
    raw: float,
    premailer: float,
) -> dict:
    stats = run.stats
    messages = int(stats["messages"])
    render_ms = stats["render"] * 1000 / max(messages, 1)
    handoff = messages / stats["deliver"] if stats["deliver"] else 0.0
    return {
        "subscribers": args.subscribers,
        "papers": args.papers,
        "semantic": args.semantic,
        "model_loaded_while_sending": run.model_loaded,
        "connections": args.connections,
        "stages": {
            "rank": {
                "seconds": stats["rank"],
                "per_second": round(args.subscribers / stats["rank"]) if stats["rank"] else None,
            },
            "render": {
                "seconds": stats["render"],
                "per_second": round(messages / stats["render"]) if stats["render"] else None,
                "ms_per_email": round(render_ms, 3),
            },
            "compose": {"seconds": stats["compose"]},
            "ledger": {
                "seconds": stats["ledger"],
                # One transaction per message: the answer to the last, the claim of this one.
                "per_second": round(messages / stats["ledger"]) if stats["ledger"] else None,
            },
            "send": {
                "seconds": stats["deliver"],
                "per_second": round(handoff, 1),
                "messages": messages,
            },
        },
        "total_seconds": round(run.finished - run.started, 3),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "counts": run.counts,
        "sink": {"messages": received[0], "recipients": received[1]},
        "baselines": {
            "raw_smtp_per_second": round(raw, 1),
            "premailer_ms_per_email": round(premailer, 3),
        },
        "ratios": {
            "handoff_vs_raw": round(handoff / raw, 3),
            "render_speedup_vs_premailer": round(premailer / render_ms, 1) if render_ms else None,
        },
    }


def compare_shards(one: ShardRun, runs: list[ShardRun], received: tuple[int, int]) -> dict:
    wall = max(r.finished for r in runs) - min(r.started for r in runs)
    single = one.finished - one.started
    return {
        "count": len(runs),
        "total_seconds": round(wall, 3),
        "one_shard_seconds": round(single, 3),
        "speedup": round(single / wall, 2),
        "sink": {"messages": received[0], "recipients": received[1]},
        "runs": [
            {
                "shard": r.shard,
                "seconds": round(r.finished - r.started, 3),
                "rank_seconds": r.stats["rank"],
                "send_seconds": r.stats["deliver"],
                "ledger_seconds": r.stats["ledger"],
                "messages": r.stats["messages"],
                "peak_rss_mb": round(r.peak_rss_mb, 1),
            }
            for r in runs
        ],
    }


def embedding_report(run: EmbedRun, subscribers: int) -> dict:
    per_profile = run.profiles_seconds * 1000 / max(run.profiles, 1)
    return {
        "papers": run.papers,
        "ms_per_paper": round(run.papers_seconds * 1000 / max(run.papers, 1), 1),
        "profiles": run.profiles,
        "ms_per_profile": round(per_profile, 2),
        "whole_list_minutes": round(per_profile * subscribers / 60_000, 1),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


def table(result: dict) -> str:
    stages, base, ratios = result["stages"], result["baselines"], result["ratios"]
    rows = [
        f"edition: {result['subscribers']:,} subscribers x {result['papers']:,} papers "
        f"(semantic {result['semantic']}; {result['connections']} SMTP connection(s))",
        f"{'stage':<10}{'seconds':>9}  rate",
        f"{'rank':<10}{stages['rank']['seconds']:>9.1f}  {stages['rank']['per_second']:,} subscribers/s",
        f"{'render':<10}{stages['render']['seconds']:>9.1f}  {stages['render']['per_second']:,} emails/s "
        f"({stages['render']['ms_per_email']:.2f} ms/email; premailer on each email: "
        f"{base['premailer_ms_per_email']:.2f} ms, {ratios['render_speedup_vs_premailer']}x slower)",
        f"{'compose':<10}{stages['compose']['seconds']:>9.1f}  (MIME; within send)",
        f"{'ledger':<10}{stages['ledger']['seconds']:>9.1f}  {stages['ledger']['per_second']:,} "
        "transactions/s (a claim and a record each; within send)",
        f"{'send':<10}{stages['send']['seconds']:>9.1f}  {stages['send']['per_second']:,.0f} messages/s "
        f"(raw smtplib to the same sink: {base['raw_smtp_per_second']:,.0f}/s, "
        f"{ratios['handoff_vs_raw']:.0%})",
        f"{'total':<10}{result['total_seconds']:>9.1f}  the worker's tick, start to end",
        f"peak RSS of the sending process: {result['peak_rss_mb']:.0f} MB"
        + ("; the model was loaded in it" if result["model_loaded_while_sending"] else ""),
        f"sent: {result['counts']}; the sink received {result['sink']['messages']:,} messages "
        f"for {result['sink']['recipients']:,} addresses",
    ]
    if embedding := result.get("embedding"):
        rows.append(
            f"embedding step (its own process, the real model): {embedding['papers']:,} papers, "
            f"{embedding['ms_per_paper']} ms each; {embedding['profiles']:,} profiles, "
            f"{embedding['ms_per_profile']} ms each (the whole list: about "
            f"{embedding['whole_list_minutes']} min); peak RSS {embedding['peak_rss_mb']:.0f} MB"
        )
    if shards := result.get("shards"):
        rows.append(
            f"{shards['count']} shards side by side: {shards['total_seconds']:.1f} s against "
            f"{shards['one_shard_seconds']:.1f} s for one ({shards['speedup']}x); the sink "
            f"received {shards['sink']['messages']:,} messages for "
            f"{shards['sink']['recipients']:,} addresses"
        )
        for run in shards["runs"]:
            rows.append(
                f"  shard {run['shard']}: {run['seconds']:.1f} s (rank {run['rank_seconds']:.1f} s,"
                f" send {run['send_seconds']:.1f} s), {run['messages']:,} messages, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB"
            )
    if senders := result.get("senders"):
        rows.append(f"the same edition to a {senders['sink']}, each from a fresh copy:")
        labels = {"sqlite": "SQLite"} | {
            key: "PostgreSQL" for key in senders if re.fullmatch(r"postgres_\d+", key)
        }
        for key, label in labels.items():
            run = senders[key]
            cpu = run["server_cpu_ms_per_message"]
            rows.append(
                f"  {label}, {run['senders']} sender(s): {run['seconds']:.1f} s, "
                f"{run['per_second']:,.0f} messages/s; ledger {run['ledger_ms_per_message']} "
                "ms per message (claims and records, per sender)"
                + (f"; the server's CPU {cpu} ms per message" if cpu is not None else "")
            )
            for one in run["runs"]:
                rows.append(
                    f"    {one['seconds']:.1f} s (rank {one['rank_seconds']:.1f} s, send "
                    f"{one['send_seconds']:.1f} s, ledger {one['ledger_seconds']:.1f} s), "
                    f"{one['messages']:,} messages"
                )
        rows.append(
            f"  {senders['many']} senders against one on PostgreSQL: {senders['speedup']}x; "
            f"one sender on PostgreSQL against one on SQLite: {senders['postgres_vs_sqlite']}x"
        )
    if relay := result.get("relay"):
        rows.append(
            f"through the {relay['relay']} API to a loopback HTTP sink (another process), "
            f"answering each request after {relay['latency_ms']} ms:"
        )
        for mode in ("batched", "unbatched"):
            run = relay[mode]
            rows.append(
                f"  {mode:<9} {run['requests']:>5,} requests for {run['messages']:,} messages "
                f"({run['request_mb']} MB): send {run['send']['seconds']:.1f} s, "
                f"{run['send']['per_second']:,.0f} messages/s (ledger {run['stages']['ledger_seconds']:.1f} s, "
                f"waiting for the relay {run['stages']['wait_seconds']:.1f} s); raw httpx, the same "
                f"requests: {run['raw_httpx']['seconds']:.2f} s, "
                f"{run['raw_httpx']['messages_per_second']:,.0f} messages/s "
                f"({run['send_vs_raw']:.0%}); peak RSS {run['peak_rss_mb']:.0f} MB"
            )
        ratios = relay["ratios"]
        rows.append(
            f"  batched against one message a request: {ratios['batched_vs_unbatched']}x "
            f"(raw httpx: {ratios['raw_batched_vs_unbatched']}x)"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--papers", type=int, default=300)
    parser.add_argument("--shards", type=int, default=1, help="also send as N shards")
    parser.add_argument("--connections", type=int, default=1, help="SMTP connections")
    parser.add_argument(
        "--relay",
        choices=["postmark", "resend", "off"],
        default="postmark",
        help="also send through this relay's API, batched and not",
    )
    parser.add_argument(
        "--relay-latency",
        type=float,
        default=0.0,
        help="milliseconds the relay sink takes to answer each request (default 0)",
    )
    parser.add_argument(
        "--db", help="also send on this PostgreSQL server (postgresql://...), by --senders"
    )
    parser.add_argument(
        "--senders", type=int, default=2, help="sender processes on PostgreSQL (with --db)"
    )
    parser.add_argument(
        "--senders-sink",
        choices=["outbox", "relay"],
        default="outbox",
        help="where the senders of --db send: a file outbox on tmpfs, or the relay sink",
    )
    parser.add_argument(
        "--semantic",
        choices=["on", "off"],
        default="on",
        help="rank with the semantic model (the default install's ranking) or lexically",
    )
    parser.add_argument(
        "--embed-sample",
        type=int,
        default=1000,
        help="readers whose interests the real model embeds (the others reuse their vectors)",
    )
    parser.add_argument("--raw-messages", type=int, default=2000)
    parser.add_argument("--premailer-emails", type=int, default=100)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = measure(args, say)
    print(json.dumps(result, indent=2) if args.json else table(result))


if __name__ == "__main__":
    main()
