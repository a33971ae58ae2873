"""Text as people read it: arXiv's TeX turned into Unicode for display, plain text left as
it is, whitespace normalized, and nothing ever raised."""

from __future__ import annotations

import re

import pytest

from newsletter.mail.text import display_text, one_line
from newsletter.models import Paper
from newsletter.sources.sample_page import parse_sample_page
from newsletter.store.ingest import sample_papers_path


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (r"Schr\"odinger-Poisson systems", "Schrödinger-Poisson systems"),
        (r"Fr\'echet Cumulative Covariance", "Fréchet Cumulative Covariance"),
        (r"Teichm\"{u}ller spaces, Erd\H{o}s, Cavagli\`a", "Teichmüller spaces, Erdős, Cavaglià"),
    ],
)
def test_tex_accents_read_as_letters(source, shown):
    assert display_text(source) == shown


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (r"We use $\alpha$-theory", "We use \N{GREEK SMALL LETTER ALPHA}-theory"),
        (r"the $\Phi^4$ equation", "the Φ^4 equation"),
        (r"$partial_t u+partial_x u=0$ for all", "partial_t u+partial_x u=0 for all"),
        (
            r"growth $|u|^{p-2}u$ in $\mathbb{R}^n$",
            "growth |u|^(p-2)u in \N{DOUBLE-STRUCK CAPITAL R}^n",
        ),
        (r"rate $\tfrac{1}{2}$ and $\|x\|_2 \leq \varepsilon$", "rate 1/2 and ‖x‖_2≤ε"),
        (r"$\frac{a+b}{2}$ and $e^{-c m}$, $x^{10}$", "(a+b)/2 and e^(-c m), x^10"),
    ],
)
def test_inline_math_reads_without_markup(source, shown):
    assert display_text(source) == shown


def test_font_switches_and_unknown_macros_keep_their_words():
    assert display_text(r"the {\em dynamical stability} of \texttt{SGD}") == (
        "the dynamical stability of SGD"
    )


def test_whitespace_is_normalized():
    assert display_text("  Graph\n\n neural\tnetworks  ") == "Graph neural networks"
    assert display_text('Schr\\"odinger\n  equations') == "Schrödinger equations"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (
            "Graph\x00 networks\r\nBcc: evil@attacker.example\r",
            "Graph networks Bcc: evil@attacker.example",
        ),
        ("\x1b[31mred\x1b[0m, \x07bell\x7f and \x85next\x9b", "[31mred[0m, bell and next"),
        ("The \u03b1\x00-theory\x0b of \u2028lines", "The \u03b1-theory of lines"),
    ],
)
def test_control_characters_are_removed(source, shown):
    assert one_line(source) == shown
    assert display_text(source) == shown


def test_control_characters_are_removed_from_tex_too():
    assert display_text("The $\\alpha$\x00-theory\x1b") == "The \N{GREEK SMALL LETTER ALPHA}-theory"


def test_plain_text_keeps_what_tex_would_eat():
    plain = "~10x faster -- 5% of {all} costs, from $5, R&D #1"
    assert display_text(plain) == plain
    # In text that is TeX, the characters TeX would drop or read as comments still show.
    assert display_text(r"Schr\"odinger solver 5% faster in R&D #1") == (
        "Schrödinger solver 5% faster in R&D #1"
    )


@pytest.mark.parametrize(
    "broken",
    [r"\frac{", r"$\alpha", r"{{{ \'", r"\begin{x} $", "\\", r"\href{", r"x^{", r"$$ $"],
)
def test_malformed_tex_never_raises(broken):
    shown = display_text(broken)
    assert isinstance(shown, str) and "\n" not in shown and "%s" not in shown


def test_sample_abstracts_are_clean_and_cleaning_twice_changes_nothing():
    papers = [
        p for p in parse_sample_page(sample_papers_path().read_text()) if isinstance(p, Paper)
    ]
    texts = [text for p in papers for text in (p.title, p.abstract)]
    assert any(r"Schr\"odinger" in text for text in texts)  # the sample does carry TeX
    shown = [display_text(text) for text in texts]
    assert not [s for s in shown if re.search(r"\\[\"'`^~=.]|\s\s", s)]
    assert [display_text(s) for s in shown] == shown
    assert sum("Schrödinger" in s for s in shown) >= 3
