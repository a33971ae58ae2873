"""The operator's dashboard over HTTP (a real uvicorn server on loopback): signing in and
what refuses it, the figures of an edition sent with scripted failures against the ledger's
counts and ``newsletter stats --json``, the status form, the export and ``/metrics``."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from newsletter.models import Status
from newsletter.sending.delivery import SendOptions, send_edition
from newsletter.sending.ledger import Ledger
from newsletter.sending.stats import OUTCOMES
from newsletter.settings import SettingsError
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber, update_subscriber
from newsletter.tokens import LinkSigner
from newsletter.web import admin as admin_module
from newsletter.web.admin import SESSION_COOKIE

from .conftest import SECRET, write_jsonl
from .test_delivery import PAPER, scripted_smtp  # noqa: F401 (a fixture, taken by name)
from .test_ledger import DOMAIN
from .test_web import CSRF_INPUT, running, web_settings

pytestmark = pytest.mark.both_stores

PASSWORD = "correct horse battery staple"
TODAY = date.today()


def sign_in(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/admin/sign-in")
    token = CSRF_INPUT.search(page.text).group(1)
    return client.post("/admin/sign-in", data={"password": password, "csrf_token": token})


def table_row(html: str, table: str, label: str) -> list[int]:
    """The numbers of the row whose header cell holds ``label``, in the table ``table``."""
    found = re.search(rf'<table aria-label="{re.escape(table)}">(.*?)</table>', html, re.S)
    assert found, f"no table {table}"
    row = re.search(
        rf'<tr><th scope="row">(?:<a [^>]*>)?{re.escape(label)}(?:</a>)?</th>(.*?)</tr>',
        found.group(1),
    )
    assert row, f"no row {label} in {table}"
    return [int(n) for n in re.findall(r"<td[^>]*>(\d+)</td>", row.group(1))]


@pytest.fixture
def admin_settings(settings, smtp_server):
    return web_settings(settings, smtp_server, secret_key=SECRET, admin_password=PASSWORD)


def test_admin_is_off_without_a_password(settings, smtp_server):
    with running(web_settings(settings, smtp_server)) as url, httpx.Client(base_url=url) as client:
        for path in ("/admin", "/admin/sign-in", "/admin/subscribers", "/metrics"):
            assert client.get(path).status_code == 404


def test_sign_in_is_refused_without_the_password_a_csrf_token_or_a_real_session(
    admin_settings, store
):
    reader = add_subscriber(store, admin_settings, "ada@example.org", interests="graphs")
    with running(admin_settings) as url, httpx.Client(base_url=url) as client:
        assert client.get("/admin").headers["location"] == "/admin/sign-in"
        wrong = sign_in(client, "not it")
        assert wrong.status_code == 403 and "Wrong password." in wrong.text
        assert SESSION_COOKIE not in client.cookies
        no_token = client.post("/admin/sign-in", data={"password": PASSWORD})
        assert no_token.status_code == 403 and SESSION_COOKIE not in client.cookies

        # A cookie signed with another key, or a subscriber's own link token, is no session.
        forged = URLSafeTimedSerializer("another key", salt="newsletter.admin-session")
        for cookie in (
            forged.dumps({"password": "x"}),
            LinkSigner(SECRET).make("preferences", reader.id, reader.email),
        ):
            client.cookies.set(SESSION_COOKIE, cookie)
            assert client.get("/admin").status_code == 303
            assert client.get("/admin/subscribers.csv").status_code == 303
            assert client.get("/metrics").status_code == 401
        client.cookies.delete(SESSION_COOKIE)

        answer = sign_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=14400" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback; behind HTTPS it is Secure
        home = client.get("/admin")
        assert home.status_code == 200 and home.headers["cache-control"] == "no-store"
        # A form of the dashboard without its CSRF token changes nothing.
        refused = client.post(f"/admin/subscribers/{reader.id}/status", data={"status": "paused"})
        assert refused.status_code == 403
        assert store.get_subscriber(reader.id).status == Status.ACTIVE
    attempts = [e["detail"]["ok"] for e in store.events("admin.sign_in")]
    assert attempts == [True, False]  # newest first; the attempt without a token never ran


def test_sign_in_attempts_are_rate_limited(admin_settings, store):
    with running(admin_settings) as url, httpx.Client(base_url=url) as client:
        answers = [sign_in(client, f"guess {i}").status_code for i in range(11)]
        assert answers == [403] * 10 + [429]
        assert sign_in(client).status_code == 429  # even the right one, until the window ends


def test_the_pages_and_stats_match_the_ledger_after_scripted_failures(
    admin_settings,
    store,
    tmp_path,
    scripted_smtp,  # noqa: F811
    run_cli,
):
    box, _ = scripted_smtp(
        lambda a: (
            "550 5.1.1 no such user"
            if a.startswith("gone")
            else "451 4.7.1 try later"
            if a.startswith("busy")
            else None
        )
    )
    settings = replace(admin_settings, transport=box.url)
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [PAPER]))
    for email in ["ok1@", "ok2@", "ok3@", "busy1@", "busy2@", "gone@", "left@"]:
        add_subscriber(store, settings, email + "example.org", interests="graph neural networks")
    update_subscriber(store, "left@example.org", status="unsubscribed")
    report = send_edition(store, settings, TODAY)
    assert report.counts == {"sent": 3, "failed": 2, "rejected": 1}
    send_edition(store, settings, TODAY, SendOptions(to=["left@example.org"]))
    # A run that died while handing a message over leaves it unknown.
    crash = add_subscriber(store, settings, "crash@example.org", interests="graphs")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    Ledger(store, now=lambda: an_hour_ago, owner="dead-host:1").claim(
        TODAY, crash, [], DOMAIN, force=False
    )
    Ledger(store).mark_unknown()

    ledger = Ledger(store).counts(TODAY)
    assert ledger == {"sent": 3, "failed": 2, "rejected": 1, "suppressed": 1, "unknown": 1}
    expected = [sum(ledger.values()), *(ledger[o] for o in OUTCOMES)]

    with running(settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client)
        overview = client.get("/admin").text
        assert table_row(overview, "Editions by outcome", TODAY.isoformat()) == expected
        assert table_row(overview, "Bounce and complaint rates", "Bounces") == [
            1
        ]  # and its rate, 25.00%
        assert "25.00%" in overview
        changes = table_row(overview, "Subscriber changes, last 90 days", TODAY.isoformat())
        assert changes == [8, 0, 1, 1]  # joined, confirmed, unsubscribed, bounced
        edition = client.get(f"/admin/editions/{TODAY}").text
        assert "550 5.1.1 no such user" in edition and "451 4.7.1 try later" in edition
        assert "dead-host:1" in edition  # the unknown message's holder
        found = client.get(f"/admin/editions/{TODAY}", params={"q": "busy"}).text
        assert found.count('aria-label="Preview as ') == 2
        svg = client.get("/admin/charts/editions-dark.svg")
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert "<script" not in svg.text
        metrics = client.get("/metrics").text
        assert f'newsletter_edition_messages{{edition="{TODAY}",status="failed"}} 2.0' in metrics
        assert 'newsletter_subscribers{status="unsubscribed"} 1.0' in metrics
        scraped = httpx.get(f"{url}/metrics", auth=("prometheus", PASSWORD))
        assert scraped.status_code == 200
        assert 'newsletter_messages{status="rejected"} 1.0' in scraped.text
        assert httpx.get(f"{url}/metrics", auth=("prometheus", "nope")).status_code == 401

    result = run_cli("stats", "--json", env={"NEWSLETTER_DB": str(settings.db)})
    figures = json.loads(result.output)
    (row,) = [e for e in figures["editions"] if e["edition"] == TODAY.isoformat()]
    assert [row["total"], *(row[o] for o in OUTCOMES)] == expected
    assert figures["rates"]["bounces"] == 1 and figures["rates"]["messages"] == 4
    assert figures["subscribers"]["unsubscribed"] == 1 and figures["subscribers"]["bounced"] == 1
    assert sum(d["joined"] for d in figures["subscriber_days"]) == 8


def test_changing_a_status_and_exporting(admin_settings, store):
    reader = add_subscriber(store, admin_settings, "ada@example.org", interests="graphs")
    with running(admin_settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client)
        found = client.get("/admin/subscribers", params={"q": "ADA@"}).text
        assert f'href="/admin/subscribers/{reader.id}"' in found
        page = client.get(f"/admin/subscribers/{reader.id}").text
        token = CSRF_INPUT.search(page).group(1)
        changed = client.post(
            f"/admin/subscribers/{reader.id}/status", data={"status": "paused", "csrf_token": token}
        )
        assert changed.status_code == 200 and "the status is now paused" in changed.text
        assert store.get_subscriber(reader.id).status == Status.PAUSED
        export = client.get("/admin/subscribers.csv")
        assert export.headers["content-type"].startswith("text/csv")
        assert "ada@example.org" in export.text and "paused" in export.text


def test_a_short_admin_password_is_refused(settings):
    with pytest.raises(SettingsError, match="at least 16 characters"):
        replace(settings, admin_password="hunter2")


def test_wrong_basic_auth_on_metrics_counts_as_a_failed_sign_in(admin_settings, store):
    with running(admin_settings) as url:
        answers = [
            httpx.get(f"{url}/metrics", auth=("p", f"guess {i}")).status_code for i in range(11)
        ]
        assert answers == [401] * 10 + [429]
        assert httpx.get(f"{url}/metrics", auth=("p", PASSWORD)).status_code == 429
        assert httpx.get(f"{url}/metrics").status_code == 401  # no password: nothing to count
    assert [e["detail"]["via"] for e in store.events("admin.sign_in")] == ["metrics"] * 10


def test_a_status_that_does_not_exist_is_refused(admin_settings, store):
    reader = add_subscriber(store, admin_settings, "ada@example.org", interests="graphs")
    with running(admin_settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client)
        token = CSRF_INPUT.search(client.get(f"/admin/subscribers/{reader.id}").text).group(1)
        answer = client.post(
            f"/admin/subscribers/{reader.id}/status", data={"status": "vip", "csrf_token": token}
        )
        assert answer.status_code == 400
    assert store.get_subscriber(reader.id).status == Status.ACTIVE


def test_stats_prints_the_overview_for_people(settings, store, run_cli):
    add_subscriber(store, settings, "ada@example.org", interests="graphs")
    result = run_cli("stats", env={"NEWSLETTER_DB": str(settings.db)})
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "Subscribers: 1 active"
    assert lines[1] == "Last 90 days: 1 joined, 0 confirmed, 0 unsubscribed, 0 bounced"
    assert "Bounce rate 0.00% (limit 2%), complaint rate 0.000% (limit 0.3%)" in result.output


def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(admin_settings, store):
    with running(admin_settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client)
        copied = client.cookies[SESSION_COOKIE]  # taken from the browser, say
        page = client.get("/admin")
        assert page.status_code == 200
        token = CSRF_INPUT.search(page.text).group(1)
        assert client.post("/admin/sign-out", data={"csrf_token": token}).status_code == 303
        with httpx.Client(base_url=url, cookies={SESSION_COOKIE: copied}) as replay:
            assert replay.get("/admin").status_code == 303
            assert replay.get("/admin/subscribers.csv").status_code == 303
            assert replay.get("/metrics").status_code == 401
        # Signing in again opens a session that works.
        assert sign_in(client).status_code == 303
        assert client.get("/admin").status_code == 200


def test_attempts_at_the_same_time_cannot_try_more_passwords_than_the_limit(
    admin_settings, store, monkeypatch
):
    """Ten attempts that arrive while another one is comparing its password (requests in
    parallel) leave that one no room: the limit holds for attempts made, not only for
    failures already counted."""
    admin = admin_module.Admin(SimpleNamespace(settings=admin_settings), [SECRET])
    compared = []
    real_compare = admin_module.same_secret

    def compare_while_others_arrive(given, expected):
        compared.append(given)
        if len(compared) == 1:  # the others arrive while the first one compares
            for i in range(admin_module.SIGN_IN_LIMIT_PER_IP):
                admin.check_password(store, f"parallel guess {i}", "203.0.113.7", "sign-in")
        return real_compare(given, expected)

    monkeypatch.setattr(admin_module, "same_secret", compare_while_others_arrive)
    assert admin.check_password(store, "first guess", "203.0.113.7", "sign-in") is False
    assert len(compared) == admin_module.SIGN_IN_LIMIT_PER_IP
    # Once the attempts are over, the right password is refused too, until the window ends.
    assert admin.check_password(store, PASSWORD, "203.0.113.7", "sign-in") is None


def test_passwords_are_compared_by_digest_whatever_their_lengths():
    from newsletter.web.auth import same_secret

    secret = "a-long-admin-password-0123"
    assert same_secret(secret, secret)
    for given in ("", secret[:-1], secret + "x", secret.upper(), "é" * 30):
        assert not same_secret(given, secret)
