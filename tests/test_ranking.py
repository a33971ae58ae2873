"""The first ranking: lexical relevance, eligibility, limits, muted terms and reasons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from newsletter.models import Paper, Status, Subscriber
from newsletter.ranking import RankingParams, analyze, rank, stem

from .conftest import SHARED

PARAMS = RankingParams(min_score=0.04, category_boost=0.1)


def subscriber(n: int, interests: str, **fields) -> Subscriber:
    values = dict(
        id=n,
        email=f"s{n}@example.org",
        status=Status.ACTIVE,
        timezone="UTC",
        delivery_hour=7,
        max_papers=3,
        interests=interests,
    )
    values.update(fields)
    return Subscriber(**values)


@pytest.fixture(scope="module")
def sample_papers() -> list[Paper]:
    rows = [
        json.loads(line) for line in (SHARED / "eval" / "papers.jsonl").read_text().splitlines()
    ]
    return [Paper(id=r["id"], title=r["title"], abstract=r["abstract"]) for r in rows]


def test_analyzer_folds_plurals_hyphens_and_filler_words():
    assert stem("networks") == "network"
    assert stem("studies") == "study"
    assert stem("analysis") == "analysis"
    tokens = analyze("I am interested in graph neural networks - continuous-depth GNNs")
    assert "interested" not in tokens
    assert {"graph", "neural", "network", "continuous", "depth", "gnn"} <= set(tokens)
    assert "graph neural" in tokens


def test_analyzer_reads_tex_accents_and_unicode_alike():
    assert analyze(r"Schr\"odinger") == analyze("Schrödinger") == ["schrodinger"]
    assert analyze(r"Fr\'echet K\"{o}nig")[:2] == ["frechet", "konig"]


def test_each_subscriber_gets_the_papers_about_their_interests(sample_papers):
    subs = [
        subscriber(1, "graph neural networks, spectral filters, diffusion-based GNNs"),
        subscriber(2, "nonlinear Schrödinger equations and well-posedness"),
    ]
    eligible = np.ones((2, len(sample_papers)), dtype=bool)
    picks = rank(subs, sample_papers, eligible, PARAMS)
    gnn_titles = " ".join(p.paper.title.lower() for p in picks[1])
    assert "graph" in gnn_titles
    assert any(
        "schr" in p.paper.title.lower() or "schr" in p.paper.abstract.lower() for p in picks[2]
    )
    assert {p.paper.id for p in picks[1]}.isdisjoint({p.paper.id for p in picks[2]})
    for chosen in picks.values():
        scores = [p.score for p in chosen]
        assert scores == sorted(scores, reverse=True)
        assert len(chosen) == 3


def test_ranking_quality_on_the_development_set(sample_papers):
    """Precision of the top five against the human judgments in shared/eval."""
    profiles = json.loads((SHARED / "eval" / "profiles-dev.json").read_text())
    subs = [subscriber(i, p["interests"], max_papers=5) for i, p in enumerate(profiles)]
    eligible = np.ones((len(subs), len(sample_papers)), dtype=bool)
    picks = rank(subs, sample_papers, eligible, PARAMS)
    relevant = [
        sum(1 for p in picks[i] if profile["judgments"].get(p.paper.id, 0) > 0) / 5
        for i, profile in enumerate(profiles)
    ]
    assert np.mean(relevant) >= 0.7


def test_ineligible_papers_are_never_picked(sample_papers):
    subs = [subscriber(1, "graph neural networks")]
    first = rank(subs, sample_papers, np.ones((1, len(sample_papers)), dtype=bool), PARAMS)[1]
    eligible = np.ones((1, len(sample_papers)), dtype=bool)
    blocked = {p.paper.id for p in first}
    for column, paper in enumerate(sample_papers):
        eligible[0, column] = paper.id not in blocked
    second = rank(subs, sample_papers, eligible, PARAMS)[1]
    assert second and blocked.isdisjoint(p.paper.id for p in second)


def test_minimum_score_sends_fewer_papers_rather_than_irrelevant_ones(sample_papers):
    subs = [subscriber(1, "medieval tapestry conservation", max_papers=5)]
    picks = rank(subs, sample_papers, np.ones((1, len(sample_papers)), dtype=bool), PARAMS)
    assert picks[1] == []


def test_muted_terms_remove_papers(sample_papers):
    subs = [
        subscriber(1, "graph neural networks", max_papers=10),
        subscriber(2, "graph neural networks", max_papers=10, muted_terms=["diffusion"]),
    ]
    picks = rank(subs, sample_papers, np.ones((2, len(sample_papers)), dtype=bool), PARAMS)
    assert any("diffusion" in f"{p.paper.title} {p.paper.abstract}".lower() for p in picks[1])
    assert all("diffusion" not in f"{p.paper.title} {p.paper.abstract}".lower() for p in picks[2])


def test_category_boost_lifts_papers_in_subscribers_categories():
    papers = [
        Paper(
            id="a",
            title="Optimization of deep networks",
            abstract="Optimization methods.",
            categories=["math.OC"],
        ),
        Paper(
            id="b",
            title="Optimization of deep networks",
            abstract="Optimization methods.",
            categories=["cs.LG"],
        ),
    ]
    subs = [subscriber(1, "optimization", categories=["cs.LG"], max_papers=2)]
    picks = rank(subs, papers, np.ones((1, 2), dtype=bool), PARAMS)[1]
    assert [p.paper.id for p in picks] == ["b", "a"]
    assert "your categories" in picks[0].reason


def test_reason_names_the_matched_interest_terms(sample_papers):
    subs = [subscriber(1, "reinforcement learning for control")]
    picks = rank(subs, sample_papers, np.ones((1, len(sample_papers)), dtype=bool), PARAMS)[1]
    for pick in picks:
        assert pick.reason.startswith("matches your interests: ")
        terms = pick.reason.removeprefix("matches your interests: ").split(", ")
        text = f"{pick.paper.title} {pick.paper.abstract}".lower()
        assert all(any(word in text for word in term.split()) for term in terms)


def test_each_subscriber_gets_at_most_their_own_number_of_papers(sample_papers):
    subs = [
        subscriber(1, "neural networks", max_papers=1),
        subscriber(2, "neural networks", max_papers=7),
    ]
    picks = rank(subs, sample_papers, np.ones((2, len(sample_papers)), dtype=bool), PARAMS)
    assert (len(picks[1]), len(picks[2])) == (1, 7)
    assert picks[1][0].paper.id == picks[2][0].paper.id


def test_ranking_blocks_of_subscribers_give_the_same_result(sample_papers, monkeypatch):
    """Scoring in blocks (for memory) must not change any subscriber's picks."""
    import newsletter.ranking as ranking

    subs = [
        subscriber(i, text)
        for i, text in enumerate(
            [
                "graph neural networks",
                "optimization complexity",
                "Schrödinger equation",
                "reinforcement learning",
            ]
            * 3
        )
    ]
    eligible = np.ones((len(subs), len(sample_papers)), dtype=bool)
    whole = rank(subs, sample_papers, eligible, PARAMS)
    monkeypatch.setattr(ranking, "BLOCK", 5)
    blocked = rank(subs, sample_papers, eligible, PARAMS)
    assert {k: [p.paper.id for p in v] for k, v in whole.items()} == {
        k: [p.paper.id for p in v] for k, v in blocked.items()
    }
