"""The embeddings of the semantic model kept in the database: a paper's passages are
embedded once per text (at ingest, or when it is next ranked), a profile's interests once
per change, and the corpus's average passage is read from the stored ones. The one part of
ranking that reads the store: the ranker and the model (:mod:`newsletter.ranking.semantic`)
never do.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from ..models import Paper, Status, Subscriber
from ..settings import Settings
from ..store import Store
from . import semantic

log = logging.getLogger(__name__)

#: Profiles whose embeddings are read (or computed) together.
PROFILE_CHUNK = 10_000


def paper_vectors(
    store: Store, model: semantic.Embedder, papers: Sequence[Paper]
) -> semantic.PaperVectors:
    """Passage embeddings of ``papers`` (in order): from the store, or computed and stored
    once per paper text."""
    texts = ["\n".join(semantic.passages(p)) for p in papers]
    stacked = _cached(
        store,
        model,
        "paper_embeddings",
        "paper_id",
        [p.id for p in papers],
        texts,
        pieces=lambda text: text.split("\n"),
    )
    return semantic._stack(stacked.vectors)


def embed_pending(store: Store, settings: Settings) -> tuple[int, int]:
    """The embedding step of an ingest: the new papers (:func:`embed_new_papers`) and the
    active readers' changed interests (:func:`embed_profiles`), how many of each. The
    edition then finds every embedding stored and never loads the model, and the model's
    runtime is released after the step, so that a worker does not hold it through the send
    (some 400 MB beside the ranking's own)."""
    if not semantic.wanted(settings):
        return 0, 0
    with semantic.borrowed(semantic.load_embedder()):
        return embed_new_papers(store, settings), embed_profiles(store, settings)


def embed_new_papers(store: Store, settings: Settings) -> int:
    """Embed the newest papers that have no embedding yet (after an ingest), so that
    sending does not wait for the model; how many. At most ``CENTER_PAPERS`` of them: older
    ones are no longer candidates (one ranked anyway is embedded then). Nothing without
    the semantic extra, and the model is loaded only when there is something to embed."""
    if not semantic.wanted(settings):
        return 0
    papers = store.papers_without_embedding(semantic.MODEL_NAME, semantic.CENTER_PAPERS)
    if not papers:
        return 0
    model = semantic.load_embedder()
    for start in range(0, len(papers), semantic.EMBED_BATCH_PAPERS):
        paper_vectors(store, model, papers[start : start + semantic.EMBED_BATCH_PAPERS])
    return len(papers)


def embed_profiles(
    store: Store, settings: Settings, subscribers: Sequence[Subscriber] | None = None
) -> int:
    """Embed the interests of ``subscribers`` (the active ones by default) whose embedding
    is missing or older than their interests, ``PROFILE_CHUNK`` at a time; how many. The
    model is loaded only when one has changed, and then released again."""
    if not semantic.wanted(settings):
        return 0
    if subscribers is None:
        subscribers = store.list_subscribers(Status.ACTIVE)
    embedded = 0
    with semantic.borrowed(semantic.load_embedder()) as model:
        for start in range(0, len(subscribers), PROFILE_CHUNK):
            chunk = subscribers[start : start + PROFILE_CHUNK]
            embedded += _cached(
                store,
                model,
                "profile_embeddings",
                "subscriber_id",
                [s.id for s in chunk],
                [s.interests or "" for s in chunk],
                pieces=lambda text: [text],
            ).fresh
    return embedded


def corpus_center(store: Store, model: semantic.Embedder) -> np.ndarray:
    """Where similarities are measured from: the average passage of the newest
    ``CENTER_PAPERS`` papers with stored embeddings (today's candidates among them, as
    :func:`paper_vectors` stores them), or the origin while there are too few."""
    stored = store.recent_paper_embeddings(model.name, semantic.CENTER_PAPERS)
    vectors = [np.frombuffer(v, dtype=np.float32).reshape(-1, model.dimension) for v in stored]
    return semantic._reference_point(
        np.vstack(vectors) if vectors else np.zeros((0, model.dimension), np.float32),
        len(stored),
    )


def profile_vectors(
    store: Store, model: semantic.Embedder, subscribers: Sequence[Subscriber]
) -> np.ndarray:
    """Embeddings of the subscribers' interests: recomputed only when the text changed. A
    visitor's interests (id 0: the home page's "see what you would get", never stored) are
    embedded each time and kept nowhere."""
    texts = [s.interests or "" for s in subscribers]
    if subscribers and all(s.id < 1 for s in subscribers):
        return model.embed(texts)
    if not subscribers:
        return np.zeros((0, 0), np.float32)
    # Read a chunk at a time into one array: the stored bytes of a whole list and their
    # stacked copy (154 MB each for 100,000 readers) never live at once.
    vectors = np.empty((len(subscribers), model.dimension), np.float32)
    for start in range(0, len(subscribers), PROFILE_CHUNK):
        end = start + PROFILE_CHUNK
        stacked = _cached(
            store,
            model,
            "profile_embeddings",
            "subscriber_id",
            [s.id for s in subscribers[start:end]],
            texts[start:end],
            pieces=lambda text: [text],
        )
        vectors[start : start + len(stacked.vectors)] = np.vstack(stacked.vectors)
    return vectors


class _Embedded(NamedTuple):
    vectors: list[np.ndarray]
    #: How many of them were computed now (the others were stored).
    fresh: int


def _cached(
    store: Store,
    model: semantic.Embedder,
    table: str,
    key: str,
    keys: list,
    texts: list[str],
    pieces: Callable[[str], list[str]],
) -> _Embedded:
    """For each text, the embeddings of its ``pieces`` (rows x dim): stored ones whose text
    is unchanged, the others computed in one batch and stored."""
    digests = [text_digest(t) for t in texts]
    stored = store.embeddings(table, key, model.name, keys)
    result = {
        i: np.frombuffer(stored[k][1], dtype=np.float32).reshape(-1, model.dimension)
        for i, (k, d) in enumerate(zip(keys, digests, strict=True))
        if stored.get(k, ("",))[0] == d
    }
    missing = [i for i in range(len(keys)) if i not in result]
    if missing:
        split = [pieces(texts[i]) for i in missing]
        fresh = model.embed([piece for parts in split for piece in parts])
        bounds = np.cumsum([0, *map(len, split)])
        for n, i in enumerate(missing):
            result[i] = fresh[bounds[n] : bounds[n + 1]]
        store.save_embeddings(
            table, key, model.name, [(keys[i], digests[i], result[i].tobytes()) for i in missing]
        )
        log.info("embedded %d text(s) for %s", len(missing), table)
    return _Embedded([result[i] for i in range(len(keys))], len(missing))


def text_digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]
