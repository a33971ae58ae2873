"""The semantic extra: embeddings computed once and kept, and what they add to the ranking.
Under .ci/run the extra is installed, so these tests run there (a missing extra fails)."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from newsletter import semantic
from newsletter.edition import plan_edition
from newsletter.ingest import ingest_path
from newsletter.models import Paper
from newsletter.settings import Settings
from newsletter.subscribers import add_subscriber, update_subscriber

from .conftest import REQUIRE_TOOLS, write_jsonl


@pytest.fixture(scope="module", autouse=True)
def semantic_extra() -> None:
    if not semantic.installed():
        if REQUIRE_TOOLS:
            pytest.fail("the semantic extra is not installed (.ci/run installs it)")
        pytest.skip("the semantic extra is not installed")


@pytest.fixture
def on(settings):
    return replace(settings, semantic="on")


def test_passages_cover_a_long_abstract_in_sentence_runs():
    sentences = [
        f"Sentence number {i} talks about topic {i} at some length here." for i in range(40)
    ]
    paper = Paper(id="p", title="A long one", abstract=" ".join(sentences))
    parts = semantic.passages(paper)
    assert len(parts) > 1
    assert all(part.startswith("A long one. ") for part in parts)
    assert all(len(part.split()) <= semantic.PASSAGE_WORDS + 10 for part in parts)
    assert " ".join(p.removeprefix("A long one. ") for p in parts) == " ".join(sentences)


def test_paper_embeddings_are_computed_once_and_kept(store, on, tmp_path, monkeypatch):
    papers = [
        {"id": f"2501.0000{i}", "title": f"Topic {i}", "abstract": f"An abstract about topic {i}."}
        for i in range(3)
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    model = semantic.embedder(on)
    stored = [store.get_paper(p["id"]) for p in papers]
    first = semantic.paper_vectors(store, model, stored)

    calls = []
    monkeypatch.setattr(
        model, "embed", lambda texts: calls.append(texts) or np.zeros((len(texts), 384))
    )
    again = semantic.paper_vectors(store, model, stored)
    assert calls == []
    assert np.allclose(first.vectors, again.vectors)

    changed = replace(stored[0], abstract="A different abstract now.")
    semantic.paper_vectors(store, model, [changed, *stored[1:]])
    assert len(calls) == 1 and len(calls[0]) == 1  # only the changed paper, once


def test_profile_embedding_is_recomputed_only_when_interests_change(store, on, monkeypatch):
    subscriber = add_subscriber(store, on, "a@example.org", interests="graph neural networks")
    model = semantic.embedder(on)
    semantic.profile_vectors(store, model, [subscriber])
    calls = []
    real = model.embed
    monkeypatch.setattr(model, "embed", lambda texts: calls.append(list(texts)) or real(texts))
    semantic.profile_vectors(store, model, [subscriber])
    assert calls == []
    changed = update_subscriber(store, "a@example.org", interests="protein folding")
    semantic.profile_vectors(store, model, [changed])
    assert calls == [["protein folding"]]


def test_semantic_model_finds_a_paper_without_a_shared_word(store, settings, on, tmp_path):
    from datetime import date

    papers = [
        {
            "id": "2501.00001",
            "title": "Automobile fleets",
            "abstract": "We route delivery automobiles through cities.",
        },
        {
            "id": "2501.00002",
            "title": "Protein folding",
            "abstract": "We predict how amino acid chains fold.",
        },
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    subscriber = add_subscriber(
        store, settings, "cars@example.org", interests="cars and vehicles on roads"
    )
    lexical = plan_edition(store, settings, date.today(), [subscriber])[subscriber.id]
    hybrid = plan_edition(store, on, date.today(), [subscriber])[subscriber.id]
    assert lexical == []
    assert [p.paper.id for p in hybrid] == ["2501.00001"]
    assert hybrid[0].reason == "close in topic to your interests"


def test_the_extra_is_optional():
    assert importlib.util.find_spec("newsletter.semantic") is not None
    assert semantic.embedder(Settings(semantic="off")) is None
