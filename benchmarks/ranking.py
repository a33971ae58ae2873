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
  scaled to N: the approach the vectorized ranking replaces.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from datetime import UTC, datetime

import numpy as np
from edition import base_papers, interest_phrases, synthetic_papers

from newsletter.models import Paper, Status, Subscriber
from newsletter.ranking.engine import LexicalModel, RankingParams, SemanticInputs, rank
from newsletter.ranking.semantic import PaperVectors

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


def timed(call) -> tuple[float, object]:
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
    print(f"peak RSS:         {figures['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
