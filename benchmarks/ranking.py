"""Ranking speed: the vectorized ranking against a per-pair loop, in the same run.

    python benchmarks/ranking.py [--subscribers 20000] [--papers 195]

Prints seconds for both and their ratio. The per-pair baseline scores a sample of the
subscribers (it is slow) and is scaled to the full count.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from newsletter.ingest import sample_papers_path
from newsletter.models import Paper, Status, Subscriber
from newsletter.ranking import LexicalModel, RankingParams, rank
from newsletter.sources.sample_page import parse_sample_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--baseline-sample", type=int, default=200)
    args = parser.parse_args()

    papers = [
        p for p in parse_sample_page(sample_papers_path().read_text()) if isinstance(p, Paper)
    ]
    vocabulary = sorted({w for p in papers for w in p.title.lower().split() if w.isalpha()})
    rng = random.Random(7)
    subscribers = [
        Subscriber(
            id=i,
            email=f"s{i}@example.org",
            status=Status.ACTIVE,
            timezone="UTC",
            delivery_hour=7,
            max_papers=5,
            interests=" ".join(rng.sample(vocabulary, 6)),
        )
        for i in range(args.subscribers)
    ]
    params = RankingParams(min_score=0.04, category_boost=0.1)
    eligible = np.ones((len(subscribers), len(papers)), dtype=bool)

    start = time.perf_counter()
    picks = rank(subscribers, papers, eligible, params)
    vectorized = time.perf_counter() - start

    sample = subscribers[: args.baseline_sample]
    start = time.perf_counter()
    model = LexicalModel(papers)
    paper_vectors = [model.papers([p]) for p in papers]
    for s in sample:
        query = model.queries([s.interests])
        scores = [(query @ v.T).toarray()[0, 0] for v in paper_vectors]
        sorted(range(len(papers)), key=lambda i: -scores[i])[:5]
    per_pair = (time.perf_counter() - start) * len(subscribers) / len(sample)

    print(f"subscribers={len(subscribers)} papers={len(papers)}")
    print(f"vectorized ranking: {vectorized:.2f} s ({sum(map(len, picks.values()))} picks)")
    print(f"per-pair loop (scaled from {len(sample)}): {per_pair:.2f} s")
    print(f"speed-up: {per_pair / vectorized:.1f}x")


if __name__ == "__main__":
    main()
