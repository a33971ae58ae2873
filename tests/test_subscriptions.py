"""The core of self-managed subscriptions, without the web: sign-up and its confirmation
email, confirming, expiry of pending sign-ups, links, preferences and their preview."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from itsdangerous.encoding import base64_decode, base64_encode

from newsletter.models import Status
from newsletter.sending.delivery import send_edition
from newsletter.sending.edition import plan_edition, preview_picks, recently_sent
from newsletter.store import Store, SubscriberNotFound, open_store
from newsletter.subscribers.profiles import add_subscriber
from newsletter.subscribers.subscriptions import (
    InvalidForm,
    SignUp,
    answer_sign_up,
    check_sign_up,
    confirm_subscription,
    confirmation_message,
    expire_pending,
    read_feedback,
    read_link,
    save_preferences,
    send_message,
    start_subscription,
    unsubscribe,
)
from newsletter.tokens import BadToken, LinkSigner

from .conftest import SECRET, make_paper

TODAY = date.today()
GNN = "graph neural networks, spectral filters"
PDE = "nonlinear Schrödinger equations, regularity"


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(SECRET)


def _sign_up(email: str, interests: str = GNN) -> SignUp:
    return check_sign_up({"email": email, "interests": interests, "categories": ""})


def _answer(store: Store, settings, signer: LinkSigner, sign_up: SignUp, ip: str | None):
    """Record ``sign_up`` and compose the email that answers it, as answer_sign_up does."""
    subscriber = start_subscription(store, settings, signer, sign_up, ip=ip)
    return confirmation_message(settings, signer, subscriber)


def _link(message, purpose: str) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(rf"https://papers\.example\.org/{purpose}/(\S+)", text).group(1)


def _consent_ip(store: Store, email: str) -> str | None:
    row = store.conn.execute("SELECT consent_ip FROM subscribers WHERE email = ?", [email])
    return row.fetchone()[0]


def test_sign_up_of_a_new_address_is_pending_with_consent_and_gets_a_confirm_link(
    store, settings, signer
):
    message = _answer(store, settings, signer, _sign_up("Ada@Example.ORG"), ip="203.0.113.7")

    ada = store.get_subscriber("Ada@example.org")
    assert ada.status == Status.PENDING
    assert ada.interests == GNN
    assert ada.consent_source == "web" and ada.consent_at
    assert _consent_ip(store, ada.email) == "203.0.113.7"
    assert message["To"] == "Ada@example.org"
    assert message["Subject"] == "Confirm your subscription to Daily Papers"
    assert message["Auto-Submitted"] == "auto-generated"
    token = _link(message, "confirm")
    assert f"/confirm/{token}" in message.get_body(("html",)).get_content()
    assert read_link(store, settings, signer, "confirm", token)[0].id == ada.id


def test_confirming_activates_once_and_records_the_ip(store, settings, signer):
    start_subscription(store, settings, signer, _sign_up("ada@example.org"), ip="203.0.113.7")
    pending = store.get_subscriber("ada@example.org")

    active = confirm_subscription(store, pending, ip="198.51.100.1")
    again = confirm_subscription(store, active, ip="198.51.100.2")

    assert active.status == again.status == Status.ACTIVE
    confirmations = store.events("subscription.confirmed")
    assert [e["detail"]["ip"] for e in confirmations] == ["198.51.100.1"]


def test_a_second_sign_up_replaces_a_pending_one(store, settings, signer):
    start_subscription(store, settings, signer, _sign_up("ada@example.org"), ip="1.1.1.1")
    second = _answer(store, settings, signer, _sign_up("ada@example.org", PDE), ip="2.2.2.2")

    assert [s.email for s in store.list_subscribers()] == ["ada@example.org"]
    ada = store.get_subscriber("ada@example.org")
    assert ada.status == Status.PENDING and ada.interests == PDE
    assert _consent_ip(store, ada.email) == "2.2.2.2"
    assert read_link(store, settings, signer, "confirm", _link(second, "confirm"))[0].id == ada.id


def test_sign_up_of_an_active_address_changes_nothing_and_mails_its_preferences_link(
    store, settings, signer
):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)

    message = _answer(store, settings, signer, _sign_up("ada@example.org", PDE), ip="1.1.1.1")

    after = store.get_subscriber("ada@example.org")
    assert (after.status, after.interests, after.id) == (Status.ACTIVE, GNN, ada.id)
    assert message["Subject"] == "You already receive Daily Papers"
    assert "/confirm/" not in message.get_body(("plain",)).get_content()
    token = _link(message, "preferences")
    assert read_link(store, settings, signer, "preferences", token)[0].id == ada.id


def test_an_unsubscribed_address_stays_unsubscribed_until_it_confirms(store, settings, signer):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    unsubscribe(store, ada, via="page")

    message = _answer(store, settings, signer, _sign_up("ada@example.org"), ip=None)

    assert store.get_subscriber("ada@example.org").status == Status.UNSUBSCRIBED
    back, _ = read_link(store, settings, signer, "confirm", _link(message, "confirm"))
    assert confirm_subscription(store, back, ip=None).status == Status.ACTIVE


def test_sign_up_reports_every_bad_field_at_once():
    with pytest.raises(InvalidForm) as caught:
        check_sign_up({"email": "not-an-address", "interests": "x" * 2001, "categories": "c$"})

    assert set(caught.value.errors) == {"email", "interests", "categories"}
    assert "2000 characters" in caught.value.errors["interests"]


def test_an_address_alone_is_a_sign_up_for_the_trending_papers():
    """Issue 14: interests and categories are optional; without them a reader gets the
    day's trending papers."""
    alone = check_sign_up({"email": "ada@example.org", "interests": "  ", "categories": ""})
    assert (alone.email, alone.interests, alone.categories) == ("ada@example.org", "", [])

    assert check_sign_up({"email": "ada@example.org", "categories": "cs.LG"}).categories == [
        "cs.LG"
    ]


def test_confirmation_message_escapes_the_address_in_html(store, settings, signer):
    message = _answer(store, settings, signer, _sign_up("tom&jerry@example.org"), ip=None)

    html = message.get_body(("html",)).get_content()
    assert "tom&amp;jerry@example.org" in html and "tom&jerry" not in html
    assert "tom&jerry@example.org" in message.get_body(("plain",)).get_content()


def test_confirm_link_older_than_the_expiry_is_refused(store, settings, signer):
    start_subscription(store, settings, signer, _sign_up("ada@example.org"), ip=None)
    ada = store.get_subscriber("ada@example.org")
    days = settings.pending_expiry_days

    fresh = signer.make("confirm", ada.id, ada.email, issued=int(time.time()) - days * 86400 + 60)
    stale = signer.make("confirm", ada.id, ada.email, issued=int(time.time()) - days * 86400 - 60)
    undated = signer.make("confirm", ada.id, ada.email)

    assert read_link(store, settings, signer, "confirm", fresh)[0].id == ada.id
    for token in (stale, undated):
        with pytest.raises(BadToken):
            read_link(store, settings, signer, "confirm", token)


def test_a_token_spelled_differently_with_the_same_bytes_is_refused(store, settings, signer):
    """The last base64 character of a signature has spare bits: another spelling decodes to
    the same bytes and would verify; an altered link must not work however it is altered."""
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    token = signer.make("preferences", ada.id, ada.email)
    payload, signature = token.rsplit(".", 1)
    twins = [
        f"{payload}.{signature[:-1]}{c}"
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != signature[-1]
        and base64_decode(signature[:-1] + c) == base64_decode(signature)
        and base64_encode(base64_decode(signature[:-1] + c)).decode() != signature[:-1] + c
    ]

    assert twins, "SHA-1 signatures leave spare bits in their last character"
    assert signer.read("preferences", token).subscriber_id == ada.id
    for twin in twins:
        with pytest.raises(BadToken):
            signer.read("preferences", twin)
        with pytest.raises(BadToken):
            read_link(store, settings, signer, "preferences", twin)


def test_feedback_link_names_its_subscriber_by_token_and_a_stored_paper_and_signal_by_query(
    store, settings, signer
):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    bob = add_subscriber(store, settings, "bob@example.org", interests=GNN)
    store.save_paper(make_paper(1, id="astro-ph/0601001"))
    token = signer.make("feedback", ada.id, ada.email)

    feedback = read_feedback(store, settings, signer, token, "astro-ph/0601001", "less")
    assert (feedback.subscriber.id, feedback.paper.id) == (ada.id, "astro-ph/0601001")
    assert (feedback.signal, feedback.value) == ("less", -1)
    assert read_feedback(store, settings, signer, token, "astro-ph/0601001", "more").value == 1
    # Bob's token marks for Bob, whatever the query says: nothing in it names a subscriber.
    theirs = signer.make("feedback", bob.id, bob.email)
    assert (
        read_feedback(store, settings, signer, theirs, "astro-ph/0601001", "more").subscriber == bob
    )

    forged = LinkSigner("another key").make("feedback", ada.id, ada.email)
    other_purpose = signer.make("preferences", ada.id, ada.email)
    for bad_token in (forged, other_purpose):
        with pytest.raises(BadToken):
            read_feedback(store, settings, signer, bad_token, "astro-ph/0601001", "more")
    for paper_id, signal in [
        ("2501.99999", "more"),  # not in the store
        ("astro-ph", "more"),
        ("", "more"),
        (None, "more"),
        ("astro-ph/0601001", "1"),
        ("astro-ph/0601001", "More"),
        ("astro-ph/0601001", ""),
        ("astro-ph/0601001", None),
    ]:
        with pytest.raises(BadToken):
            read_feedback(store, settings, signer, token, paper_id, signal)


def test_expire_forgets_only_pending_sign_ups_past_the_expiry(store, settings, signer):
    start_subscription(store, settings, signer, _sign_up("old@example.org"), ip=None)
    add_subscriber(store, settings, "active@example.org", interests=GNN)
    days = settings.pending_expiry_days
    later = datetime.now(UTC) + timedelta(days=days, minutes=1)

    assert expire_pending(store, settings, now=later - timedelta(minutes=2)) == []
    assert expire_pending(store, settings, now=later) == ["old@example.org"]

    with pytest.raises(SubscriberNotFound):
        store.get_subscriber("old@example.org")
    assert store.get_subscriber("active@example.org").status == Status.ACTIVE


def test_subscribers_expire_command_lists_what_it_forgot(run_cli, settings, signer):
    with open_store(settings.db) as store:
        start_subscription(store, settings, signer, _sign_up("old@example.org"), ip=None)
        with store.transaction():
            store.conn.execute("UPDATE subscribers SET created_at = '2000-01-01T00:00:00+00:00'")

    result = run_cli("--db", str(settings.db), "subscribers", "expire", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["old@example.org"]
    again = run_cli("--db", str(settings.db), "subscribers", "expire")
    assert again.stdout.strip() == "Forgot 0 sign-up(s) never confirmed."


def test_a_sign_up_is_answered_by_composing_and_sending_after_it_is_recorded(
    store, settings, signer
):
    outbox = settings.db.parent / "outbox"
    pending = start_subscription(store, settings, signer, _sign_up("ada@example.org"), ip=None)
    assert pending.status == Status.PENDING and not outbox.exists()  # nothing composed yet

    result = answer_sign_up(store, settings, signer, pending)

    assert result.status == "sent"
    [sent] = outbox.rglob("*.eml")
    assert str(sent) == result.transport_id
    assert "Subject: Confirm your subscription" in sent.read_text()
    assert answer_sign_up(store, settings, signer, None) is None  # a suppressed address


def test_send_message_reports_a_dead_server_as_failed_and_logs_it(store, settings, signer):
    message = _answer(store, settings, signer, _sign_up("ada@example.org"), ip=None)
    settings = settings.__class__(**{**settings.__dict__, "transport": "smtp://127.0.0.1:9"})

    result = send_message(store, settings, message)

    assert result.status == "failed" and "cannot connect" in result.error
    assert store.events("subscription.mail_failed")[0]["detail"]["to"] == "ada@example.org"


# -- preferences ------------------------------------------------------------------------------

PREFERENCES = {
    "interests": GNN,
    "categories": "cs.LG",
    "muted_terms": "survey",
    "max_papers": "3",
    "trending_papers": "1",
    "frequency": "weekly",
    "weekly_day": "4",
    "delivery_hour": "6",
    "timezone": "Europe/Berlin",
    "paused_until": "2030-01-31",
}


def test_save_preferences_applies_every_field(store, settings):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)

    saved, ranking_changed = save_preferences(store, ada, PREFERENCES)

    assert ranking_changed  # categories, muted terms and papers per email
    assert (saved.categories, saved.muted_terms, saved.max_papers) == (["cs.LG"], ["survey"], 3)
    assert (saved.frequency, saved.weekly_day, saved.trending_papers) == ("weekly", 4, 1)
    assert (saved.delivery_hour, saved.timezone, saved.paused_until) == (
        6,
        "Europe/Berlin",
        "2030-01-31",
    )
    resumed, ranking_changed = save_preferences(store, saved, {**PREFERENCES, "paused_until": ""})
    assert resumed.paused_until is None and not ranking_changed


def test_save_preferences_reports_every_bad_field_and_changes_nothing(store, settings):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    bad = {
        **PREFERENCES,
        "timezone": "Mars/Olympus",
        "delivery_hour": "25",
        "max_papers": "0",
        "trending_papers": "11",
        "frequency": "hourly",
        "weekly_day": "9",
        "paused_until": "soon",
    }

    with pytest.raises(InvalidForm) as caught:
        save_preferences(store, ada, bad)

    assert set(caught.value.errors) == {
        "timezone",
        "delivery_hour",
        "max_papers",
        "trending_papers",
        "frequency",
        "weekly_day",
        "paused_until",
    }
    assert "IANA" in caught.value.errors["timezone"]
    assert store.get_subscriber(ada.id) == ada


@pytest.fixture
def papers(store):
    """Two distinct papers on graph neural networks (no near-tie for the ranking to break
    either way) and one on PDE."""
    store.save_paper(
        make_paper(
            1,
            title="Spectral graph neural networks with learnable filters",
            abstract="We design spectral filters for graph neural networks and their stability.",
        )
    )
    store.save_paper(
        make_paper(
            2,
            title="Oversmoothing in deep message passing graph neural networks",
            abstract="Deep graph neural networks lose expressive power; we analyze oversmoothing.",
        )
    )
    store.save_paper(
        make_paper(
            3,
            title="Regularity for nonlinear Schrödinger equations",
            abstract="We prove well-posedness and regularity of nonlinear Schrödinger equations.",
        )
    )


def _ids(picks) -> list[str]:
    return [p.paper.id for p in picks]


def test_preview_before_the_send_is_the_plan(store, settings, papers):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)

    preview = preview_picks(store, settings, ada, TODAY)

    assert preview and _ids(preview) == _ids(plan_edition(store, settings, TODAY, [ada])[ada.id])
    assert "2501.00003" not in _ids(preview)


def test_preview_after_the_send_ranks_todays_papers_for_the_new_interests(store, settings, papers):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    send_edition(store, settings, TODAY)
    sent = _ids(plan_edition(store, settings, TODAY, [ada])[ada.id])

    ada, changed = save_preferences(store, ada, {**PREFERENCES, "interests": PDE, "categories": ""})

    assert changed
    assert _ids(preview_picks(store, settings, ada, TODAY)) == ["2501.00003"]
    assert _ids(plan_edition(store, settings, TODAY, [ada])[ada.id]) == sent  # what went out


def test_recently_sent_lists_the_papers_of_the_last_editions(store, settings, papers):
    ada = add_subscriber(store, settings, "ada@example.org", interests=GNN)
    assert recently_sent(store, ada) == []

    send_edition(store, settings, TODAY)

    recent = recently_sent(store, ada)
    assert {edition for edition, _ in recent} == {TODAY.isoformat()}
    assert [paper.id for _, paper in recent] == _ids(
        plan_edition(store, settings, TODAY, [ada])[ada.id]
    )


def test_a_bounced_address_is_not_mailed_by_a_sign_up_and_cannot_confirm_itself_back(
    store, settings, signer
):
    gone = add_subscriber(store, settings, "gone@example.org", interests=GNN)
    store.update_subscriber(gone.id, status=Status.BOUNCED)
    assert (
        start_subscription(store, settings, signer, _sign_up("gone@example.org"), ip=None) is None
    )
    bounced = store.get_subscriber("gone@example.org")
    assert confirm_subscription(store, bounced, ip=None).status == Status.BOUNCED
    assert unsubscribe(store, bounced, via="page").status == Status.BOUNCED
    assert store.get_subscriber("gone@example.org").status == Status.BOUNCED
