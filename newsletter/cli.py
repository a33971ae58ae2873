"""The ``newsletter`` command: a thin layer that parses options and calls the core API."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from . import demo as demo_module
from .models import WHOLE_LIST, Section, Shard, Status, in_section
from .ranking import embeddings
from .sending.daily import run_daily
from .sending.delivery import RunControls, SendOptions, send_edition
from .sending.edition import preview
from .sending.ledger import ClaimRefusal, Refusal
from .sending.locking import LockBusy, SendingLock
from .sending.report import Outcome, SendReport
from .sending.stats import OUTCOMES, overview
from .sending.status import (
    BOUNCE_RATE_LIMIT,
    COMPLAINT_RATE_AIM,
    COMPLAINT_RATE_LIMIT,
    status_report,
)
from .sending.worker import Worker
from .settings import Settings, SettingsError, load_settings
from .sources.registry import REMOTE_SOURCES, build_source, http_client
from .store import (
    DuplicateSubscriber,
    Store,
    StoreUnavailable,
    SubscriberNotFound,
    UnsupportedStore,
    is_postgresql,
    open_store,
)
from .store.copy import CopyRefused, copy_between
from .store.ingest import (
    FORMATS,
    IngestError,
    IngestSummary,
    ingest_sources,
    ingest_url,
    read_input,
    sample_papers_path,
    store_records,
)
from .subscribers.mailbox import MailboxError, scan_bounces
from .subscribers.profiles import (
    InvalidSubscriber,
    add_subscriber,
    export_csv,
    import_csv,
    record_feedback,
    update_subscriber,
)
from .subscribers.subscriptions import expire_pending
from .transports import TransportError
from .web import serve as serve_web

#: Errors that are the user's to fix: shown as one clear line, without a traceback.
USER_ERRORS = (
    LockBusy,
    SettingsError,
    IngestError,
    InvalidSubscriber,
    SubscriberNotFound,
    DuplicateSubscriber,
    TransportError,
    UnsupportedStore,
    StoreUnavailable,
    CopyRefused,
    MailboxError,
)


class Group(click.Group):
    """A command group that turns the core's user errors into ``Error: ...`` and exit 1."""

    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from exc


DATE = click.DateTime(formats=["%Y-%m-%d"])


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard:
    try:
        return Shard.parse(value) if value else WHOLE_LIST
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


_shard_option = click.option(
    "--shard",
    metavar="I/N",
    callback=_parse_shard,
    help="Only shard I of N: the subscribers whose id is I modulo N (e.g. 0/2).",
)


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _store(ctx: click.Context) -> Store:
    return ctx.with_resource(open_store(_settings(ctx)))


def _edition(value: Any) -> date:
    return value.date() if value else date.today()


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite database file [NEWSLETTER_DB].",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file [NEWSLETTER_CONFIG].",
)
@click.option(
    "--transport",
    help="Where mail goes: outbox:DIR, smtp://host:port, smtps://host:465 [NEWSLETTER_TRANSPORT].",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(
    ctx: click.Context, db: Path | None, config: Path | None, transport: str | None, verbose: int
) -> None:
    """A personal daily email of the new research papers each subscriber wants to read."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(config_path=config, db=db, transport=transport)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.ensure_object(dict)["settings"] = settings


# -- ingest -----------------------------------------------------------------------------------


@cli.command()
@click.argument("target", required=False, metavar="[PATH|URL]")
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice(REMOTE_SOURCES),
    help="Fetch from a remote source (repeatable). Default: the settings' sources.",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    metavar="CAT",
    help="arXiv category for arxiv/arxiv-rss, e.g. cs.LG (repeatable).",
)
@click.option("--term", "terms", multiple=True, help="Search term for arxiv (repeatable).")
@click.option("--date", "day", type=DATE, help="Day of the hf-daily list (default: today).")
@click.option(
    "--format", "fmt", type=click.Choice(list(FORMATS)), help="Input format (default: detected)."
)
@click.option("--sample", is_flag=True, help="Ingest the bundled sample papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def ingest(
    ctx: click.Context,
    target: str | None,
    sources: tuple[str, ...],
    categories: tuple[str, ...],
    terms: tuple[str, ...],
    day: Any,
    fmt: str | None,
    sample: bool,
    as_json: bool,
) -> None:
    """Read papers into the database from a file, a URL or the remote sources.

    PATH or URL may be a sample page, JSONL, an arXiv API or RSS feed, or a Hugging Face
    daily-papers list (detected from the content). Without one, the remote sources given
    with --source (or enabled in the settings) are fetched. Re-ingesting a paper updates
    it; bad records are reported with where they were and skipped.
    """
    settings = _settings(ctx)
    if sum([bool(target), bool(sources), sample]) > 1:
        raise click.UsageError("give one of PATH/URL, --source or --sample")
    summary = IngestSummary()
    if target and target.startswith(("http://", "https://")):
        with http_client(settings) as client:
            summary.sources[target] = ingest_url(
                _store(ctx), client, target, fmt, settings.max_response_bytes
            )
    elif target or sample:
        path = Path(target) if target else sample_papers_path()
        # Opened before the store: a typo must not create a database.
        with read_input(path, fmt) as records:
            summary.sources[str(path)] = store_records(_store(ctx), records, str(path))
    else:
        names = sources or settings.sources
        if not names:
            raise click.UsageError(
                "nothing to ingest: give a PATH or URL, --sample, or --source "
                f"({', '.join(REMOTE_SOURCES)}), or enable sources in the settings"
            )
        day_value = day.date() if day else None
        chosen = [
            build_source(n, settings, categories=categories, terms=terms, day=day_value)
            for n in dict.fromkeys(names)
        ]
        with http_client(settings) as client:
            summary = ingest_sources(_store(ctx), chosen, client)
    summary.embedded, summary.embedded_profiles = embeddings.embed_pending(_store(ctx), settings)
    if as_json:
        _json(summary.to_dict())
    else:
        for name, report in summary.sources.items():
            for error in report.errors:
                click.echo(f"skipped: {error}", err=True)
            for warning in report.warnings:
                click.echo(f"warning: {warning}", err=True)
            for failure in report.failures:
                click.echo(f"failed: {failure}", err=True)
            click.echo(f"Ingested {name}: {report}")
        if summary.embedded or summary.embedded_profiles:
            click.echo(
                f"Embedded {summary.embedded} paper(s) and {summary.embedded_profiles} "
                "reader profile(s) for the semantic model"
            )
    if summary.failed:
        ctx.exit(1)


@cli.command()
@click.option("--date", "edition", type=DATE, help="Edition date, YYYY-MM-DD (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def run(ctx: click.Context, edition: Any, as_json: bool) -> None:
    """The daily run: ingest from the enabled sources, then send the edition.

    A source that fails is reported and the edition still goes out with what the others
    brought.
    """
    ctx.with_resource(SendingLock(_settings(ctx).db))
    report = run_daily(_store(ctx), _settings(ctx), _edition(edition))
    if as_json:
        _json({**report.to_dict(), "send": _send_report_dict(report.send)})
    else:
        for name, result in report.ingest.sources.items():
            click.echo(f"Ingested {name}: {result}")
            for failure in result.failures:
                click.echo(f"failed: {failure}", err=True)
        for outcome in report.send.outcomes:
            _echo_outcome(outcome)
        click.echo(_send_summary(report.send))
    if report.ingest.failed or not report.send.ok:
        ctx.exit(1)


@cli.command()
@_shard_option
@click.pass_context
def worker(ctx: click.Context, shard: Shard) -> None:
    """Run the day: ingest at the configured times, send each subscriber's edition at their
    local hour. Stops cleanly on SIGTERM or SIGINT.

    With --shard I/N, this worker sends to the subscribers whose id is I modulo N, beside
    the workers of the other shards (only shard 0 ingests).
    """
    Worker(_settings(ctx), shard=shard).run()


@cli.command()
@click.option("--date", "edition", type=DATE, help="Edition date, YYYY-MM-DD (default: today).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
def status(ctx: click.Context, edition: Any, as_json: bool) -> None:
    """The worker's last and next runs, and how far an edition is."""
    report = status_report(_store(ctx), _settings(ctx), _edition(edition))
    if as_json:
        _json(report)
        return
    work = report["worker"]
    click.echo(
        f"Worker: {'running (' + work['running'] + ')' if work['running'] else 'not running'}"
    )
    for key in ("last_delivery", "last_ingest", "last_bounce_scan", "next_run"):
        if key != "last_bounce_scan" or work[key]:
            click.echo(f"  {key.replace('_', ' ')}: {work[key] or 'never'}")
    current = report["edition"]
    counts = ", ".join(f"{n} {k}" for k, n in sorted(current["counts"].items())) or "nothing yet"
    click.echo(f"Edition {current['date']}: {counts}")
    for sender in current["senders"]:
        until = (sender["lease_until"] or "?")[:19]
        lease = (
            f"lease ran out at {until}Z: the next claim sends them again (unknown)"
            if sender["lease_ran_out"]
            else f"lease until {until}Z"
        )
        holder = sender["owner"] or "an older run"
        click.echo(f"  being sent by {holder}: {sender['messages']} message(s), {lease}")
    for item in current["unknown"]:
        click.echo(
            f"  unknown after a crash (sent again, same Message-ID): {item.get('message_id')}"
        )
    for row in current["failed"]:
        nxt = row["next_attempt_at"] or "gave up"
        click.echo(
            f"  failed {row['email']} ({row['attempts']} tries): {row['last_error']}; next: {nxt}"
        )
    _echo_rates(report["rates"]["editions"])
    subs = ", ".join(f"{n} {k}" for k, n in report["subscribers"].items() if n)
    click.echo(f"Subscribers: {subs or 'none'}; papers: {report['papers']}")


def _echo_rates(editions: list[dict]) -> None:
    if not editions:
        return
    click.echo(
        f"Bounces and complaints (bounce rate: keep under {BOUNCE_RATE_LIMIT:.0%}; spam"
        f" complaints, Gmail: under {COMPLAINT_RATE_LIMIT:.1%}, aim for {COMPLAINT_RATE_AIM:.1%}):"
    )
    for row in editions:
        over = f"  OVER: {', '.join(row['over'])}" if row["over"] else ""
        click.echo(
            f"  {row['edition']}: {row['delivered']} delivered, {row['hard_bounces']} bounced"
            f" ({row['bounce_rate']:.2%}), {row['soft_bounces']} soft,"
            f" {row['complaints']} complaints ({row['complaint_rate']:.2%}){over}"
        )


# -- bounces ---------------------------------------------------------------------------------


@cli.group(cls=Group)
def bounces() -> None:
    """Bounces and complaints that come back by mail (the bounce mailbox)."""


@bounces.command("scan")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def bounces_scan(ctx: click.Context, as_json: bool) -> None:
    """Read the bounce mailbox once [NEWSLETTER_BOUNCE_MAILBOX] and apply what it says."""
    report = scan_bounces(_store(ctx), _settings(ctx))
    if as_json:
        _json(report.to_dict())
        return
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(report.counts.items()))
    click.echo(f"{report.source}: {counts or 'no messages'}")
    for item in report.items:
        who = item.email or "nobody named"
        click.echo(f"  {item.kind.replace('_', ' ')} {who}: {item.outcome} ({item.detail})")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.pass_context
def stats(ctx: click.Context, as_json: bool) -> None:
    """The dashboard's figures: subscribers, the last editions, bounce and complaint
    rates, feedback, sources and the worker."""
    figures = overview(_store(ctx), _settings(ctx))
    if as_json:
        _json(figures.to_dict())
        return
    subs = ", ".join(f"{n} {k}" for k, n in figures.subscribers.items() if n)
    click.echo(f"Subscribers: {subs or 'none'}")
    days = figures.subscriber_days
    totals = {
        k: sum(d[k] for d in days) for k in ("joined", "confirmed", "unsubscribed", "bounced")
    }
    click.echo(f"Last {len(days)} days: " + ", ".join(f"{n} {k}" for k, n in totals.items()))
    for row in figures.editions:
        counts = ", ".join(f"{row[k]} {k}" for k in OUTCOMES if row[k])
        click.echo(f"Edition {row['edition']}: {row['total']} messages ({counts or 'in progress'})")
    rates = figures.rates
    click.echo(
        f"Bounce rate {rates.bounce_rate:.2%} (limit {rates.bounce_limit:.0%}), complaint rate "
        f"{rates.complaint_rate:.3%} (limit {rates.complaint_limit:.1%}) over {rates.messages} "
        "messages"
    )
    liked = sum(d["more"] for d in figures.feedback_days)
    disliked = sum(d["less"] for d in figures.feedback_days)
    click.echo(f"Feedback, last {len(figures.feedback_days)} days: {liked} more, {disliked} less")
    for source in figures.sources:
        failing = (
            f", {source.failed_runs} of {source.runs} runs with failures"
            if source.failed_runs
            else ""
        )
        click.echo(
            f"Source {source.source}: last ingest {source.last_at}, {source.last['new']} new{failing}"
        )
    worker = figures.worker
    click.echo(
        f"Worker: {'running (' + worker['running'] + ')' if worker['running'] else 'not running'};"
        f" next run {worker['next_run'] or 'unknown'}"
    )


# -- subscribers ------------------------------------------------------------------------------


@cli.group(cls=Group)
def db() -> None:
    """Work on whole databases."""


@db.command("copy")
@click.argument("source")
@click.argument("target")
def db_copy(source: str, target: str) -> None:
    """Copy the database SOURCE into the empty database TARGET (each a SQLite file or a
    postgresql:// URL): every table, ids included; the counts are checked after."""
    copied = copy_between(source, target)
    click.echo(", ".join(f"{table}: {rows}" for table, rows in copied.items()))
    click.echo("copied; the counts of both databases agree")


@cli.group(cls=Group)
def subscribers() -> None:
    """Add, list, change, import and export subscribers."""


def _profile_options(func):
    for option in reversed(
        [
            click.option("--interests", help="Free-text research interests."),
            click.option("--categories", help="arXiv categories, comma-separated (cs.LG,math.AP)."),
            click.option("--timezone", help="IANA timezone, e.g. Europe/Berlin."),
            click.option("--hour", type=int, help="Local hour of delivery, 0-23."),
            click.option("--max-papers", type=int, help="Papers per email."),
        ]
    ):
        func = option(func)
    return func


def _print_subscriber(subscriber, as_json: bool) -> None:
    if as_json:
        _json(subscriber.to_dict())
        return
    for key, value in subscriber.to_dict().items():
        if isinstance(value, list):
            value = ", ".join(value)
        click.echo(f"{key:>15}: {value}")


@subscribers.command("add")
@click.argument("email")
@_profile_options
@click.option("--json", "as_json", is_flag=True, help="Print the subscriber as JSON.")
@click.pass_context
def subscribers_add(
    ctx: click.Context,
    email: str,
    as_json: bool,
    interests: str | None,
    categories: str | None,
    timezone: str | None,
    hour: int | None,
    max_papers: int | None,
) -> None:
    """Add EMAIL as an active subscriber (you vouch for their consent)."""
    subscriber = add_subscriber(
        _store(ctx),
        _settings(ctx),
        email,
        interests=interests or "",
        categories=categories,
        timezone=timezone,
        hour=hour,
        max_papers=max_papers,
    )
    if as_json:
        _json(subscriber.to_dict())
    else:
        click.echo(f"Added {subscriber.email} (active).")


@subscribers.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def subscribers_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List subscribers."""
    found = _store(ctx).list_subscribers(Status(status) if status else None)
    if as_json:
        _json([s.to_dict() for s in found])
        return
    for s in found:
        click.echo(f"{s.email:<40} {s.status:<13} {s.interests[:60]}")
    click.echo(f"{len(found)} subscriber(s)", err=True)


@subscribers.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def subscribers_show(ctx: click.Context, email: str, as_json: bool) -> None:
    """Show one subscriber and their profile."""
    _print_subscriber(_store(ctx).get_subscriber(email.strip()), as_json)


@subscribers.command("update")
@click.argument("email")
@_profile_options
@click.option("--muted", help="Terms to never show, comma-separated.")
@click.option(
    "--follow", "followed", help="Authors whose papers always make the cut, comma-separated."
)
@click.option(
    "--categories-only/--categories-boost",
    default=None,
    help="Only papers in the categories, or the categories as a boost.",
)
@click.option(
    "--trending-papers",
    type=click.IntRange(0, 10),
    help='Papers in the "Trending today" section after the picks (0: none).',
)
@click.option("--frequency", type=click.Choice(["daily", "weekly"]), help="How often.")
@click.option(
    "--weekly-day", type=click.IntRange(0, 6), help="Day of a weekly edition, 0 = Monday."
)
@click.option("--pause-until", type=DATE, help="No edition until this date (inclusive).")
@click.option("--resume", is_flag=True, help="End a pause now.")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="New status.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def subscribers_update(
    ctx: click.Context, email: str, as_json: bool, resume: bool, pause_until: Any, **changes: Any
) -> None:
    """Change a subscriber's profile, schedule or status."""
    renamed = {"muted": "muted_terms", "followed": "followed_authors", "hour": "delivery_hour"}
    changes = {renamed.get(k, k): v for k, v in changes.items()}
    if resume or pause_until:
        changes["paused_until"] = None if resume else pause_until.date()
    subscriber = update_subscriber(_store(ctx), email, **changes)
    _print_subscriber(subscriber, as_json)


@subscribers.command("like")
@click.argument("email")
@click.argument("paper_id")
@click.option("--dislike", is_flag=True, help="Less like this, instead of more.")
@click.option("--clear", is_flag=True, help="Forget this paper's signal.")
@click.pass_context
def subscribers_like(
    ctx: click.Context, email: str, paper_id: str, dislike: bool, clear: bool
) -> None:
    """Record "more like this" for PAPER_ID (or --dislike: less like this)."""
    signal = 0 if clear else -1 if dislike else 1
    subscriber = record_feedback(_store(ctx), email, paper_id, signal)
    word = {1: "more like", -1: "less like", 0: "no signal for"}[signal]
    click.echo(f"{subscriber.email}: {word} {paper_id}.")


@subscribers.command("dislike")
@click.argument("email")
@click.argument("paper_id")
@click.pass_context
def subscribers_dislike(ctx: click.Context, email: str, paper_id: str) -> None:
    """Record "less like this" for PAPER_ID."""
    ctx.invoke(subscribers_like, email=email, paper_id=paper_id, dislike=True, clear=False)


@subscribers.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, yes: bool) -> None:
    """Forget a subscriber entirely (profile and delivery history).

    To stop mail but keep the address suppressed, use `update EMAIL --status unsubscribed`.
    """
    store = _store(ctx)
    subscriber = store.get_subscriber(email.strip())
    if not yes:
        click.confirm(f"Remove {subscriber.email} and all their history?", abort=True)
    store.remove_subscriber(subscriber.id)
    click.echo(f"Removed {subscriber.email}.")


@subscribers.command("expire")
@click.option("--json", "as_json", is_flag=True, help="Print the forgotten addresses as JSON.")
@click.pass_context
def subscribers_expire(ctx: click.Context, as_json: bool) -> None:
    """Forget web sign-ups never confirmed within pending_expiry_days."""
    expired = expire_pending(_store(ctx), _settings(ctx))
    if as_json:
        _json(expired)
    else:
        click.echo(f"Forgot {len(expired)} sign-up(s) never confirmed.")


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def subscribers_import(ctx: click.Context, csv_file: Path, as_json: bool) -> None:
    """Add the subscribers of a CSV file (header: email,interests[,categories,timezone,hour,max_papers])."""
    report = import_csv(_store(ctx), _settings(ctx), csv_file)
    if as_json:
        _json(report.to_dict())
        return
    for error in report.errors:
        click.echo(f"skipped: {error}", err=True)
    click.echo(f"Imported {report.added} subscriber(s), skipped {report.skipped}.")


@subscribers.command("export")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--out",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Output file (default: stdout).",
)
@click.pass_context
def subscribers_export(ctx: click.Context, fmt: str, out) -> None:
    """Write all subscribers as CSV (readable by `import`) or JSON.

    In the CSV, a cell that a spreadsheet would run as a formula (starting with = + - @, a
    tab or a carriage return) or that starts with ' is written after a ', which `import`
    takes off again."""
    found = _store(ctx).list_subscribers()
    if fmt == "json":
        out.write(json.dumps([s.to_dict() for s in found], indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(export_csv(found))


# -- send and preview -------------------------------------------------------------------------

_SYMBOLS = {"sent": "✓", "would-send": "·", "skipped": "-", "failed": "✗", "rejected": "✗"}


@cli.command()
@click.option("--date", "edition", type=DATE, help="Edition date, YYYY-MM-DD (default: today).")
@click.option(
    "--to", "to", multiple=True, metavar="EMAIL", help="Only these subscribers (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Rank and report, but send and record nothing.")
@click.option("--limit", type=click.IntRange(min=0), help="Send at most N emails.")
@click.option(
    "--force", is_flag=True, help="Send again to subscribers who already had this edition."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_shard_option
@click.pass_context
def send(
    ctx: click.Context,
    edition: Any,
    to: tuple[str, ...],
    dry_run: bool,
    limit: int | None,
    force: bool,
    as_json: bool,
    shard: Shard,
) -> None:
    """Send an edition to every active subscriber who has not had it yet.

    With --shard I/N, only to the subscribers whose id is I modulo N: N such commands (or
    workers), one per shard, send an edition side by side.
    """
    settings = _settings(ctx)
    store = _store(ctx)
    ctx.with_resource(SendingLock(settings.db, shard))
    bar = None
    tally: dict[str, int] = {}
    total = len(to) or -(-store.count_subscribers(Status.ACTIVE) // shard.count)

    def tally_line(_: Outcome | None) -> str:
        return " · ".join(f"{n} {k}" for k, n in sorted(tally.items()))

    if not as_json and sys.stderr.isatty() and total > 20:
        bar = ctx.with_resource(
            click.progressbar(
                length=total, label="Sending", file=sys.stderr, item_show_func=tally_line
            )
        )

    def progress(outcome: Outcome) -> None:
        tally[outcome.status] = tally.get(outcome.status, 0) + 1
        if bar is not None:
            bar.update(1, outcome)
        elif not as_json:
            _echo_outcome(outcome)

    report = send_edition(
        store,
        settings,
        _edition(edition),
        SendOptions(to=list(to), shard=shard, dry_run=dry_run, limit=limit, force=force),
        RunControls(on_progress=progress),
    )
    if as_json:
        _json(_send_report_dict(report))
    else:
        if bar is not None:
            bar.render_finish()
            for outcome in report.outcomes:
                if outcome.status in ("failed", "rejected"):
                    _echo_outcome(outcome)
        click.echo(_send_summary(report))
    if not report.ok:
        ctx.exit(1)


def _send_summary(report: SendReport) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    lines = [f"Edition {report.edition} via {report.transport}: {counts or 'nobody to send to'}."]
    if report.unknown:
        lines.append(
            f"{len(report.unknown)} message(s) left unknown by a crashed run were sent again "
            f"with the same Message-ID: {', '.join(report.unknown)}"
        )
    if report.stopped:
        lines.append(f"Stopped early: {report.stopped}")
    return "\n".join(lines)


def _echo_outcome(outcome: Outcome) -> None:
    click.echo(
        f"{_SYMBOLS.get(outcome.status, '?')} {outcome.status:<10} {outcome.email}: {_detail(outcome)}"
    )


def _send_report_dict(report: SendReport) -> dict[str, Any]:
    """The report as JSON, with the ledger's refusals worded as the console words them."""
    data = report.to_dict()
    data["outcomes"] = [
        {**row, "detail": _detail(outcome)}
        for outcome, row in zip(report.outcomes, data["outcomes"], strict=True)
    ]
    return data


def _detail(outcome: Outcome) -> str:
    return _refusal_sentence(outcome.refusal) if outcome.refusal else outcome.detail


def _refusal_sentence(refusal: Refusal) -> str:
    """Why the ledger would not let a message go, and what the operator can do about it."""
    row = refusal.delivery
    match refusal.reason:
        case ClaimRefusal.ALREADY_SENT:
            return f"already sent ({row.message_id}); --force sends again"
        case ClaimRefusal.BEING_SENT:
            holder = (
                f" ({row.lease_owner}, until {row.lease_expires_at[:16]}Z)"
                if row.lease_owner and row.lease_expires_at
                else ""
            )
            return f"being sent by another run{holder}"
        case ClaimRefusal.REJECTED:
            return f"the server rejected it ({row.last_error}); --force tries again"
        case ClaimRefusal.SUPPRESSED:
            return "the address is suppressed"
        case ClaimRefusal.GAVE_UP:
            return f"gave up after {row.attempts} attempts ({row.last_error})"
        case ClaimRefusal.NOT_YET:
            return f"failed ({row.last_error}); next try after {(row.next_attempt_at or '')[:16]}Z"


@cli.command("preview")
@click.argument("email")
@click.option("--date", "edition", type=DATE, help="Edition date, YYYY-MM-DD (default: today).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "text", "json", "eml"]),
    default="text",
    show_default=True,
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of stdout.",
)
@click.pass_context
def preview_command(
    ctx: click.Context, email: str, edition: Any, fmt: str, out: Path | None
) -> None:
    """Show the email EMAIL gets (or got) in an edition, without sending anything."""
    day = _edition(edition)
    settings = _settings(ctx)
    subscriber, picks, renderer = preview(_store(ctx), settings, email, day)
    if fmt == "json":
        body = json.dumps(
            {
                "subscriber": subscriber.to_dict(),
                "edition": day.isoformat(),
                **{
                    str(section): [pick.to_dict() for pick in in_section(picks, section)]
                    for section in Section
                },
            },
            indent=2,
            ensure_ascii=False,
        )
    elif fmt == "eml":
        body = renderer.message(subscriber, picks, day, "<preview@localhost>").as_string()
    else:
        rendered = renderer.render(subscriber, picks, day)
        body = rendered.html if fmt == "html" else rendered.text
    if not picks:
        click.echo(
            f"{subscriber.email} has no new paper relevant enough for {day}: no email would go out.",
            err=True,
        )
    if out:
        out.write_text(body, encoding="utf-8")
        click.echo(f"Wrote {out}", err=True)
    else:
        click.echo(body)


# -- demo -------------------------------------------------------------------------------------


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Create a database, ingest the sample papers, add four sample subscribers and send
    today's edition into a file outbox. No network, no mail server."""
    settings = _settings(ctx)
    ctx.with_resource(SendingLock(settings.db))
    result = demo_module.run_demo(settings)
    shown = "PostgreSQL" if is_postgresql(settings.db) else settings.db.resolve()
    click.echo(f"Database: {shown}")
    click.echo(f"Papers: {result.ingest} (from the bundled sample page)")
    added = ", ".join(result.subscribers_added) or "none (already there)"
    click.echo(f"Sample subscribers added: {added}")
    for outcome in result.send.outcomes:
        _echo_outcome(outcome)
    click.echo(f"Outbox: {result.outbox.resolve()}")
    if result.html_files:
        click.echo("Open one in a browser:")
        for path in result.html_files:
            click.echo(f"  {path.resolve()}")


# -- web app ----------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port."
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Run the web app: subscribe, confirm, preferences, unsubscribe and feedback pages."""
    serve_web(_settings(ctx), host, port)


def main() -> None:
    cli(prog_name="newsletter")
