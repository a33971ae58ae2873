"""The email itself: what it shows, its links, its size, its headers and DKIM signature,
and that rendering inlines the stylesheet once per run rather than once per email."""

from __future__ import annotations

import base64
import email
import email.policy
import html as htmlcode
import re
from dataclasses import replace
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import dkim
import lxml.html
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.mail import render
from newsletter.mail.render import HTML_TEMPLATE, Renderer, inline_css, inline_template
from newsletter.models import Paper, Pick, Status, Subscriber
from newsletter.sending.delivery import send_edition
from newsletter.sending.ledger import Ledger
from newsletter.settings import Settings, SettingsError, load_settings
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber
from newsletter.tokens import LinkSigner, email_digest

from .conftest import SECRET, make_paper, make_subscriber, write_jsonl

EDITION = date(2026, 3, 2)
TODAY = date.today()
HOSTILE_TITLES = ["</table><script>alert(1)</script>", "{{ 7*7 }}"]


def sample_papers() -> list[Paper]:
    """A realistic edition: arXiv TeX, a trending Hugging Face paper, a long author list,
    a paper with neither link nor authors, and a word too long for a phone's width."""
    return [
        Paper(
            id="2508.13426",
            title=r"Multi-index Based Solution Theory to the $\Phi^4$ Equation in the Full"
            " Subcritical Regime",
            abstract=r"We obtain (small-parameter) well-posedness for the $\Phi^4$ equation in"
            r" the full subcritical regime, with estimates in $C^{\alpha}$ for $\alpha<1$.",
            source="arxiv",
            authors=["Lucas Broux", "Markus Tempelmayr", "Pablo Linares"],
            categories=["math.AP", "math.PR"],
        ),
        Paper(
            id="2502.01234",
            title=r"Fr\'echet Cumulative Covariance Net for Deep Nonlinear Dimension Reduction",
            abstract="We introduce a dependence measure for random objects. " * 20,
            source="hf-daily",
            authors=["Ada Lovelace", "Alan Turing", "Grace Hopper", "Emmy Noether", "Kurt Gödel"],
            categories=["stat.ML", "cs.LG"],
            upvotes=42,
        ),
        Paper(
            id="title-0123456789abcdef",
            title=r"Schr\"odinger-Poisson systems with a general critical nonlinearity",
            abstract=r"We consider a Schr\"odinger-Poisson system at critical growth.",
            source="sample",
        ),
        Paper(
            id="2502.04321",
            title="Benchmarking " + "Supercalifragilistic" * 6 + " tokenizers",
            abstract="A word longer than a phone is wide: " + "x" * 90 + ".",
            source="arxiv-rss",
            categories=["cs.CL"],
        ),
    ]


def sample_subscriber(**fields) -> Subscriber:
    values = {
        "email": "ada@example.org",
        "max_papers": 25,
        "interests": "nonlinear PDE, Schrödinger equations, dimension reduction",
    }
    return make_subscriber(7, **{**values, **fields})


def picks_of(papers: list[Paper], reason: str = "matches your interests: nonlinear") -> list[Pick]:
    return [Pick(paper, 0.5, reason) for paper in papers]


def sample_message(settings: Settings, msg_id: str = "<2026-03-02.abc@example.org>"):
    renderer = Renderer(settings, LinkSigner(SECRET))
    return renderer.message(sample_subscriber(), picks_of(sample_papers()), EDITION, msg_id)


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def elements(html: str) -> list[tuple]:
    """Every element of ``html`` in document order: tag, attributes, text and tail with
    whitespace normalized (comments left out)."""
    root = lxml.html.document_fromstring(html)
    return [
        (e.tag, dict(e.attrib), " ".join((e.text or "").split()), " ".join((e.tail or "").split()))
        for e in root.iter()
        if isinstance(e.tag, str)
    ]


# -- rendering --------------------------------------------------------------------------------


def test_each_email_is_what_premailer_on_the_full_email_would_give(settings):
    renderer = Renderer(settings, LinkSigner(SECRET))
    subscriber = sample_subscriber()
    papers = [*sample_papers(), make_paper(9, title=HOSTILE_TITLES[0])]
    picks = picks_of(papers)

    ours = renderer.render(subscriber, picks, EDITION).html
    context = renderer.context(subscriber, picks, EDITION)
    per_email = inline_css(renderer.env.get_template(HTML_TEMPLATE).render(context), renderer.css)

    assert elements(ours) == elements(per_email)
    assert 'style="' in ours and "@media" in ours


def test_stylesheet_is_inlined_once_for_all_the_emails_of_a_run(settings, monkeypatch):
    calls = []
    transform = render.premailer.transform
    monkeypatch.setattr(
        render.premailer, "transform", lambda *a, **k: calls.append(1) or transform(*a, **k)
    )
    renderer = Renderer(settings, LinkSigner(SECRET))
    for n in range(3):
        subscriber = sample_subscriber(id=n, email=f"reader{n}@example.org")
        html = renderer.render(subscriber, picks_of(sample_papers()), EDITION).html
        assert f"reader{n}@example.org" in html
        assert 'class="card" style="' in html
    assert len(calls) == 1


def test_a_template_tag_the_inlining_cannot_keep_is_refused_not_dropped():
    kept = inline_template('<p class="x">{% if a %}{{ b }}{% endif %}</p>', ".x { color: red }")
    assert kept.count("{% if a %}{{ b }}{% endif %}") == 1 and "color:red" in kept
    with pytest.raises(ValueError, match="2 Jinja tag"):
        inline_template("<style>{% if a %}.x { color: red }{% endif %}</style><p>b</p>", "")


def test_card_shows_source_categories_trending_authors_abstract_and_reason(settings):
    message = sample_message(settings)
    html = lxml.html.document_fromstring(html_of(message))
    cards = html.find_class("card")
    assert len(cards) == 4

    trending = cards[1]
    assert " ".join(trending.find_class("labels")[0].text_content().split()) == (
        "Hugging Face · stat.ML · cs.LG ▲ 42 upvotes"
    )
    assert trending.find_class("authors")[0].text_content() == (
        "Ada Lovelace, Alan Turing, Grace Hopper, et al. (5 authors)"
    )
    link = trending.find_class("title-link")[0]
    assert link.get("href") == "https://arxiv.org/abs/2502.01234"
    assert (
        link.text_content()
        == "Fréchet Cumulative Covariance Net for Deep Nonlinear Dimension Reduction"
    )
    abstract = trending.find_class("abstract")[0].text_content()
    full = " ".join(sample_papers()[1].abstract.split())
    cut = abstract.removesuffix("…")
    assert len(cut) <= render.ABSTRACT_CHARS < len(full) and abstract.endswith("…")
    assert full.startswith(cut) and full[len(cut)] in " .,;:-"  # at a word boundary
    assert trending.find_class("why")[0].text_content() == (
        "Why you got this: matches your interests: nonlinear"
    )
    # A paper from a source without a name, with no categories, link or authors.
    plain = cards[2]
    assert not plain.find_class("labels") and not plain.find_class("authors")
    assert not plain.find_class("title-link")

    text = text_of(message)
    assert "   Hugging Face · stat.ML · cs.LG · ▲ 42 upvotes\n" in text
    assert "   https://arxiv.org/abs/2502.01234\n" in text
    assert "   Why you got this: matches your interests: nonlinear\n" in text


def test_feedback_links_in_both_parts_share_one_token_and_name_paper_and_signal(settings):
    papers = [*sample_papers(), make_paper(5, id="astro-ph/0601001")]
    renderer = Renderer(settings, LinkSigner(SECRET))
    message = renderer.message(sample_subscriber(), picks_of(papers), EDITION, "<m@x>")
    pattern = r"https://papers\.example\.org/feedback/[^\s\"]+"
    in_html = [htmlcode.unescape(u) for u in re.findall(rf'href="({pattern})"', html_of(message))]
    in_text = re.findall(rf"(?:More|Less) like this: ({pattern})", text_of(message))
    assert in_html == in_text and len(in_html) == 10
    assert "More like this" in html_of(message) and "Less like this" in html_of(message)

    links = [urlsplit(url) for url in in_html]
    [token] = {link.path.removeprefix("/feedback/") for link in links}
    read = LinkSigner(SECRET).read("feedback", token)
    assert (read.subscriber_id, read.email_digest, read.data) == (
        7,
        email_digest("ada@example.org"),
        {},
    )
    assert [dict(parse_qsl(link.query, strict_parsing=True)) for link in links] == [
        {"paper": paper.id, "signal": signal} for paper in papers for signal in ("more", "less")
    ]
    assert "paper=astro-ph%2F0601001&" in in_text[-1]  # a query value, not a path segment


def test_each_email_signs_each_of_its_tokens_once_whatever_its_size(settings, monkeypatch):
    signed: list[tuple[str, int]] = []
    make = LinkSigner.make
    monkeypatch.setattr(
        LinkSigner,
        "make",
        lambda self, purpose, sid, *a, **k: (
            signed.append((purpose, sid)) or make(self, purpose, sid, *a, **k)
        ),
    )
    renderer = Renderer(settings, LinkSigner(SECRET))
    papers = [make_paper(n) for n in range(25)]
    for n, size in ((1, 1), (2, 25)):
        renderer.message(sample_subscriber(id=n), picks_of(papers[:size]), EDITION, "<m@x>")

    assert sorted(signed) == sorted(
        (purpose, n)
        for n in (1, 2)
        for purpose in ("archive", "feedback", "preferences", "unsubscribe")
    )


@pytest.mark.parametrize("hostile", HOSTILE_TITLES)
def test_hostile_text_stays_inert_in_both_parts(settings, hostile):
    papers = [
        make_paper(1, title=hostile, abstract=hostile, authors=[hostile]),
        make_paper(2),
    ]
    subscriber = sample_subscriber(interests=hostile)
    renderer = Renderer(settings, LinkSigner(SECRET))
    message = renderer.message(subscriber, picks_of(papers, reason=hostile), EDITION, "<m@x>")
    html, text = html_of(message), text_of(message)

    document = lxml.html.document_fromstring(html)
    assert document.xpath("//script") == []
    assert len(document.find_class("card")) == 2  # the table still has its two cards
    card = document.find_class("card")[0]
    for name in ("title-link", "authors", "abstract"):
        assert card.find_class(name)[0].text_content() == hostile  # not run, not cut
    assert card.find_class("why")[0].text_content() == f"Why you got this: {hostile}"
    assert document.find_class("intro")[0].text_content().endswith(f"interests: {hostile}")
    assert document.find_class("footer")  # nothing after the title was swallowed
    assert f"1. {hostile}\n   {hostile}\n" in text
    assert f"   Why you got this: {hostile}\n" in text
    assert message["Subject"].endswith(f"{hostile} (+1 more)")


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "data:text/html;base64,PHNjcmlwdD4="]
)
def test_a_stored_link_that_is_not_http_is_never_rendered(settings, url):
    papers = [make_paper(1, id="local-1", url=url), make_paper(2, url=url)]
    renderer = Renderer(settings, LinkSigner(SECRET))
    message = renderer.message(sample_subscriber(), picks_of(papers), EDITION, "<m@x>")
    html, text = html_of(message), text_of(message)

    document = lxml.html.document_fromstring(html)
    hrefs = [a.get("href") for a in document.iter("a")]
    assert all(urlsplit(h.strip()).scheme in ("http", "https", "mailto") for h in hrefs), hrefs
    first, second = document.find_class("card")
    assert not first.find_class("title-link")  # no link rather than that one
    assert second.find_class("title-link")[0].get("href") == "https://arxiv.org/abs/2501.00002"
    assert url.strip().lower()[:5] not in (html + text).lower()


def test_twenty_five_long_papers_stay_under_gmail_clipping_size(settings):
    long = "Spectral graph neural networks with very long and descriptive titles " * 8
    papers = [
        make_paper(
            n,
            title=long,
            abstract="word " * 400,
            authors=[f"Author Number {i} With A Long Double-Barrelled Name" for i in range(30)],
            categories=["cs.LG", "stat.ML", "math.OC", "cs.AI", "cs.CV", "q-bio.NC"],
            source="hf-daily",
            upvotes=12345,
            url=f"https://arxiv.org/abs/2501.{n:05d}",
        )
        for n in range(25)
    ]
    subscriber = sample_subscriber(
        email="a.very.long.address.for.testing@subdomain.example.org", interests=long
    )
    renderer = Renderer(
        replace(settings, sender_identity="Daily Papers, Example Lab\n" + "1 Long Road, " * 10),
        LinkSigner(SECRET),
    )
    html = renderer.render(subscriber, picks_of(papers, reason=long), EDITION).html

    assert len(html.encode()) < 100_000
    assert html.count('class="card"') == 25
    assert "/unsubscribe/" in html  # the footer made it into the email


# -- headers, through a real SMTP server ----------------------------------------------------

NON_ASCII_PAPERS = [
    {
        "id": "2508.13426",
        "title": "Multi-index Based Solution Theory to the Φ^4 Equation",
        "abstract": r"Well-posedness of the $\Phi^4$ equation of Fr\'echet and Schr\"odinger.",
        "authors": ["Émile Borel"],
    },
    {
        "id": "2502.01234",
        "title": r"Fr\'echet means of Schr\"odinger bridges",
        "abstract": "Schrödinger bridges between Fréchet means, for the Φ^4 equation.",
    },
]


def send_over_smtp(store, settings, smtp_server, tmp_path, **changes) -> Settings:
    settings = replace(settings, transport=smtp_server.url, **changes)
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", NON_ASCII_PAPERS))
    add_subscriber(store, settings, "ada@example.org", interests="Schrödinger, Fréchet, Φ^4")
    report = send_edition(store, settings, TODAY)
    assert report.counts == {"sent": 1}, report.to_dict()
    return settings


def raw_headers(raw: bytes) -> dict[str, str]:
    """The raw header fields of a message, unfolded, as they crossed the wire."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    fields = re.split(r"\r\n(?![ \t])", head)
    return dict(f.split(":", 1) for f in fields)


def test_list_and_identity_headers_arrive_as_rfc_8058_wants(store, settings, smtp_server, tmp_path):
    settings = send_over_smtp(
        store, settings, smtp_server, tmp_path, reply_to="Editor <editor@example.org>"
    )
    raw = smtp_server.envelopes[0].original_content
    headers = {k: re.sub(r"\r\n[ \t]", " ", v).strip() for k, v in raw_headers(raw).items()}
    unsubscribe = headers["List-Unsubscribe"]
    assert re.fullmatch(
        r"<https://papers\.example\.org/unsubscribe/[\w.-]+>, "
        r"<mailto:papers@example\.org\?subject=unsubscribe>",
        unsubscribe,
    ), unsubscribe
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == "Daily Papers <daily-papers.example.org>"
    assert headers["From"] == "Daily Papers <papers@example.org>"
    assert headers["Reply-To"] == "Editor <editor@example.org>"
    assert "DKIM-Signature" not in headers  # DKIM is off unless configured

    message = smtp_server.messages[0]
    delivery = Ledger(store).get(TODAY, store.get_subscriber("ada@example.org").id)
    assert message["Message-ID"] == delivery.message_id
    assert message["Date"].datetime.tzinfo is not None
    token = unsubscribe.split("/unsubscribe/")[1].split(">")[0]
    assert LinkSigner(SECRET).read("unsubscribe", token).matches("ada@example.org")


#: Neither a control character (a CR or LF not in a CRLF pair, NUL, ESC, ...) nor a bare CR.
_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n")


@pytest.mark.parametrize(
    "sender", ["Daily Papers <papers@example.org>", "Tägliche <papers@example.org>"]
)
def test_control_characters_of_a_paper_reach_no_header_nor_text(
    store, settings, smtp_server, sender
):
    """A title with a NUL and a CRLF, as a hostile feed could send it: the Subject is one
    clean line, no header is added, and the text shows no control character either."""
    settings = replace(settings, transport=smtp_server.url, from_address=sender)
    title = "Graph neural networks\x00\r\nBcc: evil@attacker.example\r\n\x1b[2J"
    store.save_paper(
        make_paper(
            1,
            title=title,
            abstract="Spectral graph neural\x00 networks\x1b[31m, with \x07diffusion.",
            authors=["Ada\x00 Lovelace\r\nX-Evil: 1"],
        )
    )
    add_subscriber(store, settings, "ada@example.org", interests="graph neural\x00 networks")

    report = send_edition(store, settings, TODAY)

    assert report.counts == {"sent": 1}, report.to_dict()
    (envelope,) = smtp_server.envelopes
    assert envelope.rcpt_tos == ["ada@example.org"]
    raw = envelope.original_content
    assert not _RAW_CONTROL.search(raw)
    names = {name.strip().lower() for name in raw_headers(raw)}
    assert not names & {"bcc", "x-evil"}
    message = smtp_server.messages[0]
    subject = message["Subject"]
    assert subject.startswith(f"{TODAY:%b} {TODAY.day}: Graph neural networks Bcc:")
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", subject)
    for part in (html_of(message), text_of(message)):
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", part)
        assert "Ada Lovelace X-Evil: 1" in part and "Spectral graph neural networks" in part


def test_a_from_address_with_the_cr_of_a_crlf_env_file_goes_out_clean(store, settings, smtp_server):
    loaded = load_settings(
        environ={
            "NEWSLETTER_FROM": "Daily Papers <papers@example.org>\r",
            "NEWSLETTER_REPLY_TO": "Editor <editor@example.org>\r",
        }
    )
    assert (loaded.from_address, loaded.reply_to) == (
        "Daily Papers <papers@example.org>",
        "Editor <editor@example.org>",
    )
    settings = replace(
        settings,
        transport=smtp_server.url,
        from_address=loaded.from_address,
        reply_to=loaded.reply_to,
    )
    store.save_paper(make_paper(1))
    add_subscriber(store, settings, "ada@example.org", interests="graph neural networks")

    assert send_edition(store, settings, TODAY).counts == {"sent": 1}

    raw = smtp_server.envelopes[0].original_content
    assert b"\r\r\n" not in raw and not _RAW_CONTROL.search(raw)
    headers = raw_headers(raw)
    assert headers["From"].strip() == "Daily Papers <papers@example.org>"
    assert headers["Reply-To"].strip() == "Editor <editor@example.org>"


def test_non_ascii_titles_and_names_survive_the_smtp_round_trip(
    store, settings, smtp_server, tmp_path
):
    send_over_smtp(
        store, settings, smtp_server, tmp_path, from_address="Tägliche Papers <papers@example.org>"
    )
    raw = smtp_server.envelopes[0].original_content
    assert raw.isascii()  # 7-bit on the wire: encoded words and quoted-printable

    message = smtp_server.messages[0]
    assert message["From"].addresses[0].display_name == "Tägliche Papers"
    label = f"{TODAY:%b} {TODAY.day}"
    assert message["Subject"] in {
        f"{label}: Multi-index Based Solution Theory to the Φ^4 Equation (+1 more)",
        f"{label}: Fréchet means of Schrödinger bridges (+1 more)",
    }
    for part in (html_of(message), text_of(message)):
        for word in ("Φ^4", "Fréchet means of Schrödinger bridges", "Émile Borel"):
            assert word in part
        assert "\\'" not in part and '\\"' not in part


def test_display_cleaning_leaves_the_stored_text_as_it_came(store, settings, smtp_server, tmp_path):
    send_over_smtp(store, settings, smtp_server, tmp_path)
    stored = store.get_paper("2502.01234")
    assert stored.title == r"Fr\'echet means of Schr\"odinger bridges"
    assert "Fréchet means of Schrödinger bridges" in text_of(smtp_server.messages[0])


# -- DKIM -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def dkim_settings(settings, tmp_path, dkim_key) -> Settings:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        dkim_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return replace(settings, dkim_selector="news2026", dkim_key_path=str(key_file))


def dns_with(key: rsa.RSAPrivateKey):
    """A resolver that knows one DKIM key record: news2026._domainkey.example.org."""
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        if name == b"news2026._domainkey.example.org.":
            return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
        return None

    return lookup


def test_dkim_signature_verifies_and_covers_both_list_headers(
    store, dkim_settings, smtp_server, tmp_path, dkim_key
):
    send_over_smtp(store, dkim_settings, smtp_server, tmp_path)
    raw = smtp_server.envelopes[0].original_content
    dns = dns_with(dkim_key)
    assert dkim.verify(raw, dnsfunc=dns)

    signature = email.message_from_bytes(raw, policy=email.policy.default)["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", str(signature)).split(";") if t)
    assert (tags["d"], tags["s"], tags["c"]) == ("example.org", "news2026", "relaxed/relaxed")
    signed = tags["h"].lower().split(":")
    # Each signed once more than it appears, so that another copy cannot be added.
    assert signed.count("list-unsubscribe") == 2
    assert signed.count("list-unsubscribe-post") == 2

    altered = raw.replace(b"List-Unsubscribe=One-Click", b"List-Unsubscribe=Two-Clicks")
    assert altered != raw and not dkim.verify(altered, dnsfunc=dns)
    added = raw.replace(b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example>\r\n\r\n", 1)
    assert not dkim.verify(added, dnsfunc=dns)


def test_dkim_needs_both_selector_and_key():
    with pytest.raises(SettingsError, match="dkim_selector and dkim_key_path go together"):
        Settings(dkim_selector="news2026")


@pytest.mark.parametrize("content", [None, b"not a key"], ids=["missing", "not-a-key"])
def test_bad_dkim_key_stops_the_send_before_any_message_is_claimed(
    store, settings, tmp_path, content
):
    key_file = tmp_path / "dkim.pem"
    if content is not None:
        key_file.write_bytes(content)
    settings = replace(settings, dkim_selector="news2026", dkim_key_path=str(key_file))
    ingest_path(store, write_jsonl(tmp_path / "papers.jsonl", NON_ASCII_PAPERS))
    add_subscriber(store, settings, "ada@example.org", interests="Schrödinger")

    with pytest.raises(SettingsError, match=re.escape(str(key_file))):
        send_edition(store, settings, TODAY)
    assert Ledger(store).counts(TODAY) == {}
    assert not Path(tmp_path / "outbox").exists()


@pytest.mark.parametrize("dkim_on", [False, True], ids=["plain", "dkim"])
def test_the_bytes_an_email_is_sent_as_are_what_the_email_package_writes(
    settings, dkim_settings, dkim_on
):
    """The SMTP transport sends the bytes the renderer laid out itself (``wire``): byte
    for byte what the email package flattens, also with non-ASCII names and subjects, a
    Reply-To, a DKIM signature, and after a second seal with another Message-ID."""
    settings = replace(
        dkim_settings if dkim_on else settings,
        from_address="Tägliche Papers <papers@example.org>",
        reply_to="Éditeur <editor@example.org>",
    )
    renderer = Renderer(settings, LinkSigner(SECRET))
    non_ascii = [Paper(**record) for record in NON_ASCII_PAPERS]
    for papers in (sample_papers(), sample_papers()[:1], non_ascii):
        message = renderer.message(sample_subscriber(), picks_of(papers), EDITION, "<a@x.org>")
        assert message.wire == message.as_bytes(policy=email.policy.SMTP)
        renderer.seal(message, "<b@x.org>")
        assert message.wire == message.as_bytes(policy=email.policy.SMTP)
        assert message.wire.count(b"Message-ID:") == 1 and b"<b@x.org>" in message.wire
        assert message.wire.isascii()


def test_confirmation_emails_are_dkim_signed_too(store, dkim_settings, dkim_key):
    from email.policy import SMTP

    from newsletter.subscribers.subscriptions import confirmation_message
    from newsletter.tokens import LinkSigner

    reader = add_subscriber(
        store, dkim_settings, "new@example.org", interests="graphs", status=Status.PENDING
    )
    message = confirmation_message(dkim_settings, LinkSigner("k" * 32), reader)
    raw = message.as_bytes(policy=SMTP)
    assert b"DKIM-Signature:" in raw
    assert dkim.verify(raw, dnsfunc=dns_with(dkim_key))
