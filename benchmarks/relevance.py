"""Ranking quality: the product's ranking against a plain TF-IDF cosine baseline.

    python benchmarks/relevance.py [--papers benchmarks/data/eval/papers.jsonl]
                                   [--profiles benchmarks/data/eval/profiles-dev.json]
                                   [--semantic auto|on|off]

Ranks every paper for every profile through the real ranking code (newsletter.ranking.engine.rank,
as the emails use it, with the default settings and ten papers per email) and prints
nDCG@10, P@5 and MRR per profile and on average, next to the baseline computed in the same
run (and, when the semantic extra is installed, next to plain all-MiniLM-L6-v2 cosine over
title and abstract). Judgments: 2 = what this person wants, 1 = partly; P@5 and MRR count
both as relevant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.models import Paper, Status, Subscriber
from newsletter.ranking import semantic
from newsletter.ranking.engine import RankingParams, SemanticInputs, rank
from newsletter.settings import Settings

EVAL = Path(__file__).resolve().parent / "data" / "eval"
DEPTH = 10


def metrics(ranked: list[str], judgments: dict[str, int]) -> tuple[float, float, float]:
    gains = [judgments.get(pid, 0) for pid in ranked[:DEPTH]]
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(judgments.values(), reverse=True)[:DEPTH]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    precision = sum(1 for g in gains[:5] if g > 0) / 5
    first = next((i for i, g in enumerate(gains) if g > 0), None)
    return dcg / idcg if idcg else 0.0, precision, 1 / (first + 1) if first is not None else 0.0


def baseline(papers: list[Paper], profiles: list[dict]) -> list[list[str]]:
    vectorizer = TfidfVectorizer(stop_words="english")
    docs = vectorizer.fit_transform([f"{p.title} {p.abstract}" for p in papers])
    scores = (vectorizer.transform([p["interests"] for p in profiles]) @ docs.T).toarray()
    return [[papers[i].id for i in np.argsort(-row, kind="stable")[:DEPTH]] for row in scores]


def embedding_baseline(
    papers: list[Paper], profiles: list[dict], model: semantic.Embedder
) -> list[list[str]]:
    """Plain cosine of one embedding per paper (title and abstract, as the model truncates
    them) and one per profile."""
    docs = model.embed([f"{p.title}. {p.abstract}" for p in papers])
    scores = model.embed([p["interests"] for p in profiles]) @ docs.T
    return [[papers[i].id for i in np.argsort(-row, kind="stable")[:DEPTH]] for row in scores]


def product(papers: list[Paper], profiles: list[dict], settings: Settings) -> list[list[str]]:
    subscribers = [
        Subscriber(
            id=i,
            email=f"p{i}@example.org",
            status=Status.ACTIVE,
            timezone="UTC",
            delivery_hour=7,
            max_papers=DEPTH,
            interests=p["interests"],
        )
        for i, p in enumerate(profiles)
    ]
    inputs = None
    if (model := semantic.embedder(settings)) is not None:
        inputs = SemanticInputs(
            papers=semantic.embed_papers(model, papers),
            profiles=model.embed([s.interests for s in subscribers]),
            feedback={},
        )
    eligible = np.ones((len(subscribers), len(papers)), dtype=bool)
    picks = rank(
        subscribers, papers, eligible, RankingParams.from_settings(settings), semantic=inputs
    )
    return [[pick.paper.id for pick in picks[s.id]] for s in subscribers]


def report(name: str, rankings: list[list[str]], profiles: list[dict]) -> float:
    rows = [metrics(r, p["judgments"]) for r, p in zip(rankings, profiles, strict=True)]
    print(f"\n{name}")
    print(f"  {'profile':<10} {'nDCG@10':>8} {'P@5':>6} {'MRR':>6}")
    for profile, (ndcg, p5, mrr) in zip(profiles, rows, strict=True):
        print(f"  {profile['id']:<10} {ndcg:8.3f} {p5:6.2f} {mrr:6.2f}")
    mean = np.mean(rows, axis=0)
    print(f"  {'mean':<10} {mean[0]:8.3f} {mean[1]:6.2f} {mean[2]:6.2f}")
    return float(mean[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=Path, default=EVAL / "papers.jsonl")
    parser.add_argument("--profiles", type=Path, default=EVAL / "profiles-dev.json")
    parser.add_argument("--semantic", choices=["auto", "on", "off"], default="auto")
    args = parser.parse_args()
    papers = [
        Paper(id=r["id"], title=r["title"], abstract=r["abstract"])
        for r in map(json.loads, args.papers.read_text().splitlines())
    ]
    profiles = json.loads(args.profiles.read_text())
    settings = dataclasses.replace(Settings(), semantic=args.semantic)
    print(f"{len(papers)} papers, {len(profiles)} profiles")
    base = report("baseline: plain TF-IDF cosine", baseline(papers, profiles), profiles)
    model = semantic.embedder(settings)
    if model is not None:
        name = "baseline: plain all-MiniLM-L6-v2 cosine"
        report(name, embedding_baseline(papers, profiles, model), profiles)
    kind = "lexical + semantic (all-MiniLM-L6-v2)" if model else "lexical"
    ours = report(f"newsletter ranking ({kind})", product(papers, profiles, settings), profiles)
    print(f"\nnDCG@10: {ours:.3f} vs baseline {base:.3f} ({ours - base:+.3f})")


if __name__ == "__main__":
    main()
