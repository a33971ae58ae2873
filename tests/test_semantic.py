"""The semantic extra: embeddings computed once and kept, and what they add to the ranking.
Under .ci/run the extra is installed, so these tests run there (a missing extra fails)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import numpy as np
import pytest

from newsletter.models import Paper
from newsletter.ranking import embeddings, semantic
from newsletter.ranking.engine import RankingParams, SemanticInputs, rank
from newsletter.sending.edition import plan_edition
from newsletter.settings import Settings
from newsletter.store import open_store
from newsletter.store.ingest import ingest_path
from newsletter.subscribers.profiles import add_subscriber, update_subscriber

from .conftest import EVAL, REQUIRE_TOOLS, make_subscriber, write_jsonl


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
    first = embeddings.paper_vectors(store, model, stored)

    calls = []
    monkeypatch.setattr(
        model, "embed", lambda texts: calls.append(texts) or np.zeros((len(texts), 384))
    )
    again = embeddings.paper_vectors(store, model, stored)
    assert calls == []
    assert np.allclose(first.vectors, again.vectors)

    changed = replace(stored[0], abstract="A different abstract now.")
    embeddings.paper_vectors(store, model, [changed, *stored[1:]])
    assert len(calls) == 1 and len(calls[0]) == 1  # only the changed paper, once


def test_profile_embedding_is_recomputed_only_when_interests_change(store, on, monkeypatch):
    subscriber = add_subscriber(store, on, "a@example.org", interests="graph neural networks")
    model = semantic.embedder(on)
    embeddings.profile_vectors(store, model, [subscriber])
    calls = []
    real = model.embed
    monkeypatch.setattr(model, "embed", lambda texts: calls.append(list(texts)) or real(texts))
    embeddings.profile_vectors(store, model, [subscriber])
    assert calls == []
    changed = update_subscriber(store, "a@example.org", interests="protein folding")
    embeddings.profile_vectors(store, model, [changed])
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
    assert importlib.util.find_spec("newsletter.ranking.semantic") is not None
    assert semantic.embedder(Settings(semantic="off")) is None


def test_ingest_embeds_the_new_papers_once(run_cli, tmp_path):
    papers = [
        {"id": f"2501.0001{i}", "title": f"Topic {i}", "abstract": f"An abstract on topic {i}."}
        for i in range(3)
    ]
    path = write_jsonl(tmp_path / "p.jsonl", papers)
    env = {"NEWSLETTER_SEMANTIC": "on"}
    first = json.loads(run_cli("ingest", "--json", str(path), env=env).output)
    again = json.loads(run_cli("ingest", "--json", str(path), env=env).output)
    assert (first["new"], first["embedded"]) == (3, 3)
    assert (again["unchanged"], again["embedded"]) == (3, 0)
    with open_store(tmp_path / "newsletter.db") as store:
        assert store.count("paper_embeddings") == 3


def test_the_ingest_step_embeds_changed_interests_and_gives_the_model_back(store, on, tmp_path):
    papers = [
        {"id": f"2501.0002{i}", "title": f"Topic {i}", "abstract": f"An abstract on topic {i}."}
        for i in range(2)
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    add_subscriber(store, on, "a@example.org", interests="graph neural networks")
    add_subscriber(store, on, "b@example.org", interests="protein folding")
    model = semantic.embedder(on)
    model.release()
    assert not model.loaded  # asking for the model does not load its runtime

    assert embeddings.embed_pending(store, on) == (2, 2)
    assert not model.loaded
    assert store.count("profile_embeddings") == 2
    assert embeddings.embed_pending(store, on) == (0, 0)
    update_subscriber(store, "b@example.org", interests="robot grasping")
    assert embeddings.embed_pending(store, on) == (0, 1)
    assert not model.loaded


def test_a_send_never_ranks_with_the_model_loaded(store, on, tmp_path, monkeypatch):
    """A send whose embeddings are all stored never loads the runtime; a reader who joined
    after the ingest is embedded before the ranking, and the runtime given back first."""
    from datetime import date

    from newsletter.sending import edition
    from newsletter.sending.delivery import send_edition

    papers = [
        {"id": f"2501.0003{i}", "title": f"Graph topic {i}", "abstract": f"Graphs and {i}."}
        for i in range(3)
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    for n in range(2):
        add_subscriber(store, on, f"r{n}@example.org", interests=f"graph topic {n}")
    embeddings.embed_pending(store, on)
    model = semantic.embedder(on)
    loads, loaded_while_ranking = [], []
    real_runtime, real_rank = semantic.Embedder._runtime.func, edition.rank

    def counted_runtime(self):
        if "_runtime" not in self.__dict__:
            loads.append(1)
            self.__dict__["_runtime"] = real_runtime(self)
        return self.__dict__["_runtime"]

    def observed_rank(*args, **kwargs):
        loaded_while_ranking.append(model.loaded)
        return real_rank(*args, **kwargs)

    monkeypatch.setattr(semantic.Embedder, "_runtime", property(counted_runtime))
    monkeypatch.setattr(edition, "rank", observed_rank)
    assert send_edition(store, on, date.today()).counts["sent"] == 2
    assert (loads, loaded_while_ranking) == ([], [False])

    late = add_subscriber(store, on, "late@example.org", interests="graph topic 2")
    assert send_edition(store, on, date.today()).counts["sent"] == 1
    assert (loads, loaded_while_ranking) == ([1], [False, False])
    stored = store.embeddings("profile_embeddings", "subscriber_id", model.name, [late.id])
    assert stored[late.id][0] == embeddings.text_digest("graph topic 2")


def test_similarities_are_measured_from_the_recent_corpus_not_a_thin_day(store, on, tmp_path):
    count = semantic.MIN_CENTER_PAPERS
    papers = [
        {"id": f"2501.{n:05d}", "title": f"Subject {n}", "abstract": f"Work on subject {n}."}
        for n in range(count)
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers[:-1]))
    model = semantic.embedder(on)
    embeddings.embed_new_papers(store, on)
    # Too few papers to say what the field's papers share: plain cosine.
    assert not embeddings.corpus_center(store, model).any()

    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    everything = embeddings.paper_vectors(store, model, store.recent_papers(count))
    thin_day = embeddings.paper_vectors(store, model, [store.get_paper("2501.00000")])
    center = embeddings.corpus_center(store, model)
    assert np.allclose(center, everything.vectors.mean(axis=0), atol=1e-6)
    assert not np.allclose(center, thin_day.vectors.mean(axis=0), atol=1e-3)


@pytest.fixture(scope="module")
def development_set():
    rows = [json.loads(line) for line in (EVAL / "papers.jsonl").open()]
    papers = [Paper(id=r["id"], title=r["title"], abstract=r["abstract"]) for r in rows]
    profiles = json.loads((EVAL / "profiles-dev.json").read_text())
    model = semantic.embedder(Settings(semantic="on"))
    return papers, profiles, model, semantic.embed_papers(model, papers)


def _hybrid_picks(
    development_set, interests: list[str], count: int, hybrid: bool = True
) -> list[list[str]]:
    papers, _, model, vectors = development_set
    readers = [
        make_subscriber(i, max_papers=count, interests=text) for i, text in enumerate(interests)
    ]
    inputs = SemanticInputs(papers=vectors, profiles=model.embed(interests), feedback={})
    inputs = inputs if hybrid else None
    eligible = np.ones((len(readers), len(papers)), dtype=bool)
    picks = rank(readers, papers, eligible, RankingParams(), semantic=inputs)
    return [[pick.paper.id for pick in picks[r.id]] for r in readers]


def test_hybrid_ranking_quality_on_the_development_set(development_set):
    """The first five against the human judgments: blending the semantic model in is more
    precise than the lexical ranking alone, measured on the same profiles."""
    profiles = development_set[1]
    interests = [p["interests"] for p in profiles]

    def precision(picks: list[list[str]]) -> float:
        return float(
            np.mean(
                [
                    sum(1 for pid in chosen if profile["judgments"].get(pid, 0) > 0) / 5
                    for chosen, profile in zip(picks, profiles, strict=True)
                ]
            )
        )

    hybrid = precision(_hybrid_picks(development_set, interests, 5))
    lexical = precision(_hybrid_picks(development_set, interests, 5, hybrid=False))
    assert hybrid > lexical


def test_a_reader_with_clear_matches_also_gets_close_papers_below_the_plain_threshold(
    development_set,
):
    """Plain cosine under ``semantic_min_score`` does not exclude an on-topic paper for a
    reader whom some papers clearly match; a reader whom none does still gets nothing.
    Every paper the ranking admits is asked for (how many fit in a short email depends on
    how many clear matches a corpus has), and "on-topic" is the profile's judgments'."""
    papers, profiles, model, vectors = development_set
    pde = next(p for p in profiles if p["id"] == "u01")  # nonlinear PDE analysis
    interests = [pde["interests"], "black hole mergers and gravitational waves"]
    cosines = vectors.best_passage(model.embed(interests))
    plain = dict(zip([p.id for p in papers], cosines[0], strict=True))
    assert cosines[0].max() >= 0.35  # some papers are clearly about the PDE reader's topic
    assert cosines[1].max() < 0.35  # nothing is clearly about black holes
    admitted = _hybrid_picks(development_set, interests, len(papers))
    worded = _hybrid_picks(development_set, interests, len(papers), hybrid=False)
    # Admitted on the centered, expanded similarity alone: no word match, plain cosine under.
    alone = [pid for pid in admitted[0] if plain[pid] < 0.35 and pid not in worded[0]]
    assert [pid for pid in alone if pde["judgments"].get(pid, 0) > 0]
    # Without a clear match, that similarity admits nothing: only word matches remain.
    assert set(admitted[1]) <= set(worded[1])


def test_liking_a_paper_lifts_its_nearest_neighbours_in_the_semantic_model(development_set):
    from newsletter.ranking.engine import Signals

    papers, _, model, vectors = development_set
    liked = next(p for p in papers if "Schrödinger" in p.title)
    at = [p.id for p in papers].index(liked.id)
    centroids = vectors.centroids()
    closest = np.argsort(-(centroids @ centroids[at]))
    neighbours = {papers[i].id for i in closest[1:6]}
    reader = make_subscriber(1, max_papers=len(papers), interests="neural networks")
    inputs = SemanticInputs(
        papers=vectors,
        profiles=model.embed([reader.interests]),
        feedback={liked.id: centroids[at]},
    )
    eligible = np.array([[p.id != liked.id for p in papers]])
    # The order is the semantic model's, over every paper closer than the average one.
    only_semantic = RankingParams(semantic_weight=1.0, min_score=0.0)

    def positions(signals: Signals) -> list[int]:
        picks = rank([reader], papers, eligible, only_semantic, signals=signals, semantic=inputs)[1]
        order = [pick.paper.id for pick in picks]
        return [order.index(pid) if pid in order else len(papers) for pid in neighbours]

    before, after = positions(Signals()), positions(Signals(liked={1: [liked]}))
    assert np.mean(after) < np.mean(before) - 30


def test_a_word_in_common_is_not_enough_where_the_embeddings_disagree(development_set):
    """ "matter" in "dark matter halos" and in "learning dynamics matters" is one word the
    lexical model matches; the semantic model finds that paper no closer than the average."""
    papers = development_set[0]
    wordy = next(p.id for p in papers if p.title.startswith("Sample Relationship"))
    interests = ["galaxy formation and dark matter halos"]
    lexical = _hybrid_picks(development_set, interests, len(papers), hybrid=False)[0]
    hybrid = _hybrid_picks(development_set, interests, len(papers))[0]
    assert wordy in lexical
    assert wordy not in hybrid


@pytest.mark.both_stores
def test_stored_embeddings_are_read_by_key_however_many(store, tmp_path, monkeypatch):
    monkeypatch.setattr(
        "newsletter.store.database.KEYS_PER_QUERY", 7
    )  # many chunks, a short last one
    papers = [
        {"id": f"2502.{n:05d}", "title": f"Paper {n}", "abstract": f"Abstract {n}."}
        for n in range(2000)
    ]
    ingest_path(store, write_jsonl(tmp_path / "p.jsonl", papers))
    rows = [(p["id"], f"h{n}", np.full(4, n, np.float32).tobytes()) for n, p in enumerate(papers)]
    store.save_embeddings("paper_embeddings", "paper_id", "m", rows)
    wanted = [p["id"] for p in papers[::2]] + ["2502.99999"]
    found = store.embeddings("paper_embeddings", "paper_id", "m", wanted)
    assert sorted(found) == sorted(wanted[:-1])
    assert found["2502.01998"] == ("h1998", np.full(4, 1998, np.float32).tobytes())
    assert store.embeddings("paper_embeddings", "paper_id", "other model", wanted) == {}
    assert [p.id for p in store.papers_by_ids(wanted)] == wanted[:-1]


def test_a_handful_of_papers_keeps_its_word_matches(development_set):
    """Two papers say nothing about what a field's papers share: measured from their
    average, one of them would look unlike the interests whatever they are, and the
    semantic model would veto the words it matches. Below ``MIN_CENTER_PAPERS`` it does not:
    the two papers ranked alone keep every paper the lexical ranking of those two keeps.
    (Which that is, is the lexical model's: with term weights fitted on two papers, a word
    both share weighs least, and a paper matched by that word alone may fall under
    ``min_score``; such a pair tests nothing here.)"""
    papers, profiles, model, vectors = development_set
    by_id = {p.id: p for p in papers}
    column = {pid: i for i, pid in enumerate(by_id)}
    checked = 0
    for profile in profiles:
        interests = profile["interests"]
        profile_vector = model.embed([interests])
        plain = dict(zip(by_id, vectors.best_passage(profile_vector)[0], strict=True))
        worded = _hybrid_picks(development_set, [interests], 10, hybrid=False)[0]
        weak = [pid for pid in worded if plain[pid] < 0.35]  # kept by their words alone
        for pid in weak:
            pair = [by_id[worded[0]], by_id[pid]]
            reader = make_subscriber(1, max_papers=2, interests=interests)
            lexical = _kept(reader, pair, None)
            if pid not in lexical:  # under min_score on these two papers' term weights
                continue
            passages = _papers_vectors(vectors, [column[p.id] for p in pair])
            inputs = SemanticInputs(papers=passages, profiles=profile_vector, feedback={})
            assert _kept(reader, pair, inputs) == lexical == {worded[0], pid}, profile["id"]
            # What the test guards against: measured from the two papers' average passage,
            # the weaker word match is vetoed.
            centered = replace(inputs, center=passages.vectors.mean(axis=0))
            assert pid not in _kept(reader, pair, centered), profile["id"]
            checked += 1
    assert checked


def _kept(reader, pair: list[Paper], inputs: SemanticInputs | None) -> set[str]:
    """The papers of ``pair`` that ranking them alone for ``reader`` keeps."""
    eligible = np.ones((1, len(pair)), bool)
    picks = rank([reader], pair, eligible, RankingParams(), semantic=inputs)[reader.id]
    return {p.paper.id for p in picks}


def _papers_vectors(vectors: semantic.PaperVectors, columns: list[int]) -> semantic.PaperVectors:
    """The passages of the papers at ``columns`` (in that order), as their own corpus."""
    rows = [vectors.vectors[vectors.owner == c] for c in columns]
    owner = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
    return semantic.PaperVectors(np.vstack(rows), owner)


def test_ingest_embeds_only_the_newest_papers_and_loads_the_model_only_for_them(
    store, on, tmp_path, monkeypatch
):
    papers = [
        {"id": f"2503.0000{n}", "title": f"Item {n}", "abstract": f"About item {n}."}
        for n in range(5)
    ]
    for paper in papers:  # one at a time: each is newer than the one before
        ingest_path(store, write_jsonl(tmp_path / "p.jsonl", [paper]))
    monkeypatch.setattr(semantic, "CENTER_PAPERS", 3)
    assert embeddings.embed_new_papers(store, on) == 3
    model = semantic.embedder(on)
    stored = store.embeddings("paper_embeddings", "paper_id", model.name, [p["id"] for p in papers])
    assert sorted(stored) == [p["id"] for p in papers[2:]]

    monkeypatch.setattr(store, "papers_without_embedding", lambda model, limit: [])
    monkeypatch.setattr(semantic, "_load", lambda: pytest.fail("model loaded"))
    assert embeddings.embed_new_papers(store, on) == 0


def _profile(development_set, profile_id: str) -> dict:
    return next(p for p in development_set[1] if p["id"] == profile_id)


def test_a_shared_word_alone_does_not_send_a_paper(development_set):
    """ "diffusion" in reaction-diffusion equations is not the diffusion of generative
    models, and "group" in group testing is not a symmetry group: the lexical ranking alone
    sends each reader a paper on that one word, the ranking with the semantic model does
    not."""
    papers = development_set[0]
    cases = [
        ("u01", "Continuous-Time Functional Diffusion Processes"),  # nonlinear PDE analysis
        ("d04", "An Algorithm for Computing with Brauer"),  # group / pooled testing
    ]
    for profile_id, title in cases:
        reader = _profile(development_set, profile_id)
        paper = next(p.id for p in papers if p.title.startswith(title))
        assert reader["judgments"].get(paper, 0) == 0  # off topic, as judged
        lexical = _hybrid_picks(development_set, [reader["interests"]], 10, hybrid=False)[0]
        hybrid = _hybrid_picks(development_set, [reader["interests"]], 10)[0]
        assert paper in lexical, profile_id
        assert paper not in hybrid, profile_id


def test_a_profile_of_two_topics_gets_papers_of_each(development_set):
    """Interests naming two unrelated topics ("A; B") get papers of both, not only of the
    topic more papers share words with."""
    first, second = _profile(development_set, "d02"), _profile(development_set, "d12")
    interests = (
        f"{first['interests']}; {second['interests']}"  # metamorphic testing; geometric flows
    )
    picks = set(_hybrid_picks(development_set, [interests], 10)[0])
    assert picks & {pid for pid, grade in first["judgments"].items() if grade == 2}
    assert picks & {pid for pid, grade in second["judgments"].items() if grade == 2}


def test_a_thin_day_sends_the_good_matches_and_only_them(development_set):
    """On a day of five papers, two squarely on the reader's topic and three from another
    field, the reader gets the two: neither cut by the threshold nor padded to their
    number."""
    papers, _, model, vectors = development_set
    reader_profile = _profile(development_set, "u01")  # nonlinear PDE analysis
    good = [pid for pid, grade in reader_profile["judgments"].items() if grade == 2][:2]
    other = [p.id for p in papers if p.id.startswith("a")][:3]  # software and other testing
    today = {*good, *other}
    reader = make_subscriber(1, max_papers=10, interests=reader_profile["interests"])
    eligible = np.array([[p.id in today for p in papers]])
    inputs = SemanticInputs(papers=vectors, profiles=model.embed([reader.interests]), feedback={})
    picks = rank([reader], papers, eligible, RankingParams(), semantic=inputs)[reader.id]
    assert {pick.paper.id for pick in picks} == set(good)
