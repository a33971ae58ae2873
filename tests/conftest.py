"""Shared fixtures: an isolated working directory and settings, a store, a real SMTP
server on loopback (aiosmtpd), and a CLI runner."""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from string import ascii_lowercase

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.models import Paper, Status, Subscriber
from newsletter.settings import Settings
from newsletter.store import Store, open_store

from . import pgserver
from .feedserver import FeedServer

#: The relevance development set (a copy of the shared one, so a fresh clone has it).
EVAL = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "eval"
#: Set by .ci/run: a test whose outside tool (Chromium, Node, SpamAssassin) is missing fails
#: instead of being skipped, so CI cannot pass without running it.
REQUIRE_TOOLS = os.environ.get("NEWSLETTER_REQUIRE_TOOLS") == "1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_tool(path_or_name: str) -> str:
    """The full path of an outside tool; skip the test without it (fail under CI)."""
    found = path_or_name if Path(path_or_name).is_file() else shutil.which(path_or_name)
    if not found:
        message = f"{path_or_name} is not installed"
        if REQUIRE_TOOLS:
            pytest.fail(message + " (NEWSLETTER_REQUIRE_TOOLS=1: .ci/run must install it)")
        pytest.skip(message)
    return found


SECRET = "test-secret-key-0123456789"
SENDER = "Daily Papers <papers@example.org>"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty directory with no NEWSLETTER_* settings inherited."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name != "NEWSLETTER_REQUIRE_TOOLS":
            monkeypatch.delenv(name)
    # The lexical ranking, unless a test asks for the semantic model (slow to load).
    monkeypatch.setenv("NEWSLETTER_SEMANTIC", "off")
    monkeypatch.chdir(tmp_path)
    return tmp_path


BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: the module's tests run on SQLite and on PostgreSQL"
    )
    config.addinivalue_line(
        "markers", "sqlite_only(reason): a test of SQLite's behaviour (lock files, shards)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The tests of a module marked ``both_stores`` run once per backend."""
    definition = metafunc.definition
    if (
        "backend" in metafunc.fixturenames
        and definition.get_closest_marker("both_stores")
        and not definition.get_closest_marker("sqlite_only")
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@dataclass
class PostgresServer:
    """A PostgreSQL server on loopback, started for the test session."""

    port: int
    template: str = "newsletter_template"
    databases: itertools.count = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", password: str = pgserver.PASSWORD) -> str:
        return pgserver.url(self.port, database, password)

    def fresh_database(self) -> str:
        """The URL of a new database, migrated (a copy of the template: fast)."""
        import psycopg

        name = f"test_{os.getpid()}_{next(self.databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.url(name)

    def empty_database(self) -> str:
        """The URL of a new database with no tables at all."""
        import psycopg

        name = f"empty_{os.getpid()}_{next(self.databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL, an ``initdb`` in a temporary directory, on 127.0.0.1 (as an
    unprivileged user when the tests run as root); skipped without it, failed under CI."""
    require_tool(str(pgserver.INITDB))
    # Not under pytest's directory of root's (mode 0700): the server's user must reach it.
    data = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    port = pgserver.start(data)
    server = PostgresServer(port)
    try:
        import psycopg

        from newsletter.store import open_store
        from newsletter.store.postgres import close_pools

        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {server.template}")
        open_store(server.url(server.template)).close()
        close_pools()  # a template must have no connections to be copied
        yield server
    finally:
        pgserver.stop(data)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backend: SQLite, unless the module runs on both (``both_stores``)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Where the test's database is: a file (the console's default, in the test's directory),
    or a fresh PostgreSQL database (the console's too, by NEWSLETTER_DB)."""
    if backend == "sqlite":
        yield str(tmp_path / "newsletter.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.fresh_database()
    monkeypatch.setenv("NEWSLETTER_DB", url)
    yield url
    from newsletter.store.postgres import close_pools

    close_pools()


@pytest.fixture
def settings(tmp_path: Path, database: str) -> Settings:
    return Settings(
        db=Path(database),
        transport=f"outbox:{tmp_path / 'outbox'}",
        from_address=SENDER,
        base_url="https://papers.example.org",
        secret_key=SECRET,
        semantic="off",
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with open_store(settings.db) as store:
        yield store


def make_paper(n: int = 1, **fields) -> Paper:
    values = {
        "id": f"2501.{n:05d}",
        "title": f"Paper number {n} about graph neural networks",
        "abstract": f"We study spectral graph neural networks, case {n}, with diffusion.",
        "source": "test",
    }
    values.update(fields)
    return Paper(**values)


def make_subscriber(n: int = 1, **fields) -> Subscriber:
    """An active reader held in memory, not stored: for the ranking and the renderer."""
    values = {
        "id": n,
        "email": f"reader{n}@example.org",
        "status": Status.ACTIVE,
        "timezone": "UTC",
        "delivery_hour": 7,
        "max_papers": 10,
        "interests": "graph neural networks",
    }
    values.update(fields)
    return Subscriber(**values)


def distinct_terms(count: int) -> list[str]:
    """``count`` distinct three-letter words (aaa, aab, ...): 16,000 of them, comma-separated,
    fill a 64 KB form."""
    return [
        "".join(t) for t in itertools.islice(itertools.product(ascii_lowercase, repeat=3), count)
    ]


@contextmanager
def lock_held_elsewhere(db: Path, shard: str = "") -> Iterator[subprocess.Popen]:
    """Another process holding the sending lock of ``db`` (of ``shard``, "I/N", if given)
    until the block ends, when it is killed with SIGKILL, as a crash would end it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from newsletter.sending.locking import "
            "SendingLock; from newsletter.models import Shard; SendingLock(Path(sys.argv[1]), "
            "Shard.parse(sys.argv[2]) if sys.argv[2] else Shard()).acquire(); "
            "print('held', flush=True); time.sleep(60)",
            str(db),
            shard,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def add_readers(store: Store, count: int, **fields) -> list[str]:
    """``count`` active readers of graph neural networks, one paper each, stored; their
    addresses, in the order of their ids."""
    values = {
        "status": Status.ACTIVE,
        "timezone": "UTC",
        "delivery_hour": 0,
        "max_papers": 1,
        "interests": "graph neural networks",
        "consent_source": "test",
    }
    emails = [f"reader{i:04d}@example.org" for i in range(count)]
    with store.transaction():
        for email in emails:
            store.add_subscriber(email, **{**values, **fields})
    return emails


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Mailbox:
    """What the loopback SMTP server received."""

    host: str
    port: int
    envelopes: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(env.original_content, policy=email.policy.default)
            for env in self.envelopes
        ]


class _Collector:
    def __init__(self, box: Mailbox):
        self.box = box

    async def handle_DATA(self, server, session, envelope):
        self.box.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message it accepts."""
    box = Mailbox("127.0.0.1", free_port())
    controller = Controller(_Collector(box), hostname=box.host, port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def run_cli():
    """Run ``newsletter ARGS`` in-process; output streams are kept apart."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return run


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A real HTTP server on loopback serving ``/fixtures/<name>`` and scripted replies."""
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    executable = require_tool(CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_TOOLS:
            pytest.fail("the playwright package is not installed")
        pytest.skip("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
