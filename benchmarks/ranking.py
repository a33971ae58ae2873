"""Ranking speed: the vectorized ranking, lexical and hybrid, against a per-pair loop.

    python benchmarks/ranking.py [--subscribers 20000] [--papers 1000] [--json]

Ranks N readers (interests of one to three title phrases, as in benchmarks/edition.py) over
P papers, in one run:

- the lexical ranking, as ``semantic = "off"`` sends it;
- the hybrid ranking, with sentence embeddings in the shape all-MiniLM-L6-v2 gives (384
  dimensions, one to three passages per paper). The vectors are synthetic (a shared lean
  plus a topic of their own) so that no model has to embed 100,000 profiles first: what is
  timed is the ranking's arithmetic, which does not depend on the values;
- a per-pair loop (one cosine per reader and paper, in Python) over a sample of readers,
  scaled to N: the approach the vectorized ranking replaces;
- the lexical ranking again with one more reader, whose profile is the largest allowed
  (``models.PROFILE_LIMITS``: interests of 2,000 characters, 50 papers per email, 50 muted
  terms of 60 characters, 50 followed authors, 20 categories), against the same ranking
  without them: the best of ``--repeats`` runs of each, taking turns. The profile is the
  costliest kind: the muted terms are phrases of the papers' most common words, in an
  order no paper has; the followed authors are the papers' most prolific.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from edition import base_papers, interest_phrases, synthetic_papers

from newsletter.models import MAX_INTERESTS_CHARS, PROFILE_LIMITS, Paper, Status, Subscriber
from newsletter.ranking.engine import LexicalModel, RankingParams, SemanticInputs, rank
from newsletter.ranking.semantic import PaperVectors
from newsletter.subscribers.profiles import MAX_PAPERS_LIMIT

T = TypeVar("T")

DIMENSION = 384


def readers(count: int, papers: list[Paper], rng: random.Random) -> list[Subscriber]:
    phrases = interest_phrases(papers)
    return [
        Subscriber(
            id=i,
            email=f"s{i}@example.org",
            status=Status.ACTIVE,
            timezone="UTC",
            delivery_hour=7,
            max_papers=10,
            interests=", ".join(rng.sample(phrases, rng.randint(1, 3))),
        )
        for i in range(count)
    ]


def largest_profile(reader_id: int, papers: list[Paper], rng: random.Random) -> Subscriber:
    """A reader with as much profile as the limits allow, chosen to cost the ranking most."""
    counts = Counter(w for p in papers for w in f"{p.title} {p.abstract}".lower().split())
    common = [w for w, _ in counts.most_common(40) if w.isalpha()]

    def phrase(chars: int) -> str:
        words: list[str] = []
        while len(" ".join(words)) < chars:
            words.append(rng.choice(common))
        return " ".join(words)[:chars].strip()

    phrases = interest_phrases(papers)
    interests = ""
    while len(interests) < MAX_INTERESTS_CHARS - 100:
        interests += rng.choice(phrases) + ", "
    categories = sorted({c for p in papers for c in p.categories})
    authors = Counter(a for p in papers for a in p.authors)
    muted = PROFILE_LIMITS["muted_terms"]
    return Subscriber(
        id=reader_id,
        email="largest@example.org",
        status=Status.ACTIVE,
        timezone="UTC",
        delivery_hour=7,
        max_papers=MAX_PAPERS_LIMIT,
        interests=interests.strip(", "),
        categories=categories[: PROFILE_LIMITS["categories"].items],
        muted_terms=list(dict.fromkeys(phrase(muted.chars) for _ in range(2 * muted.items)))[
            : muted.items
        ],
        followed_authors=[
            a for a, _ in authors.most_common(PROFILE_LIMITS["followed_authors"].items)
        ],
    )


def best_of(repeats: int, *calls: Callable[[], object]) -> list[float]:
    """The shortest time of each call over ``repeats`` rounds, the calls taking turns."""
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            best[i] = min(best[i], timed(call)[0])
    return best


def synthetic_embeddings(papers: int, readers: int, seed: int) -> SemanticInputs:
    """Unit vectors with a common lean, like real embeddings of one field."""
    rng = np.random.default_rng(seed)
    lean = rng.standard_normal(DIMENSION).astype(np.float32)

    def unit(count: int) -> np.ndarray:
        vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32) + 2 * lean
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    owner = np.repeat(np.arange(papers), rng.integers(1, 4, papers))
    return SemanticInputs(
        papers=PaperVectors(unit(len(owner)), owner), profiles=unit(readers), feedback={}
    )


def timed(call: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def per_pair_seconds(subscribers: list[Subscriber], papers: list[Paper], sample: int) -> float:
    model = LexicalModel(papers)
    paper_vectors = [model.papers([p]) for p in papers]
    start = time.perf_counter()
    for s in subscribers[:sample]:
        query = model.queries([s.interests])
        scores = [(query @ v.T).toarray()[0, 0] for v in paper_vectors]
        sorted(range(len(papers)), key=lambda i: -scores[i])[:10]
    return (time.perf_counter() - start) * len(subscribers) / sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--papers", type=int, default=1_000)
    parser.add_argument("--baseline-sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each largest-profile case")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    papers = synthetic_papers(base_papers(), args.papers, datetime.now(UTC), rng)
    subscribers = readers(args.subscribers, papers, rng)
    embeddings = synthetic_embeddings(len(papers), len(subscribers), args.seed)
    eligible = np.ones((len(subscribers), len(papers)), dtype=bool)
    params = RankingParams()

    lexical, picks = timed(lambda: rank(subscribers, papers, eligible, params))
    hybrid, _ = timed(lambda: rank(subscribers, papers, eligible, params, semantic=embeddings))
    per_pair = per_pair_seconds(subscribers, papers, args.baseline_sample)
    largest = largest_profile(len(subscribers), papers, rng)
    with_largest = [*subscribers, largest]
    eligible_largest = np.ones((len(with_largest), len(papers)), dtype=bool)
    without, including = best_of(
        args.repeats,
        lambda: rank(subscribers, papers, eligible, params),
        lambda: rank(with_largest, papers, eligible_largest, params),
    )
    figures = {
        "subscribers": len(subscribers),
        "papers": len(papers),
        "passages": len(embeddings.papers.owner),
        "lexical_seconds": round(lexical, 2),
        "hybrid_seconds": round(hybrid, 2),
        "hybrid_over_lexical": round(hybrid / lexical, 2),
        "per_pair_seconds": round(per_pair, 1),
        "speed_up_over_per_pair": round(per_pair / lexical, 1),
        "picks": sum(map(len, picks.values())),
        "without_largest_profile_seconds": round(without, 3),
        "with_largest_profile_seconds": round(including, 3),
        "largest_profile_ratio": round(including / without, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{figures['subscribers']} readers x {figures['papers']} papers "
          f"({figures['passages']} passages)")  # fmt: skip
    print(f"lexical ranking:  {lexical:.2f} s ({figures['picks']} picks)")
    print(f"hybrid ranking:   {hybrid:.2f} s ({figures['hybrid_over_lexical']}x the lexical)")
    print(f"per-pair loop:    {per_pair:.1f} s (scaled from {args.baseline_sample} readers; "
          f"{figures['speed_up_over_per_pair']}x slower than the lexical ranking)")  # fmt: skip
    print(f"largest profile:  {including:.3f} s with one reader of the largest allowed profile, "
          f"{without:.3f} s without: {figures['largest_profile_ratio']}x "
          f"(best of {args.repeats})")  # fmt: skip
    print(f"peak RSS:         {figures['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
