"""Ranking quality on the development set: the product's ranking against plain baselines.

    python benchmarks/relevance.py [--papers benchmarks/data/eval/papers.jsonl]
                                   [--profiles benchmarks/data/eval/profiles-dev.json]
                                   [--semantic auto|on|off] [--folds 5] [--likes 2]

Ranks every paper for every profile, in one run:

- plain TF-IDF cosine (scikit-learn, English stop words, sublinear tf) and plain BM25
  (k1 1.2, b 0.75) over title and abstract;
- plain all-MiniLM-L6-v2 cosine (one vector per title and abstract, as the model truncates
  them), when the semantic model is installed;
- the newsletter's ranking through the real code (newsletter.ranking.engine.rank, as the
  emails use it, default settings, ten papers per email, its thresholds included): lexical
  (``semantic = "off"``) and, when installed, with the semantic model.

and prints nDCG@10, P@5 and MRR per profile and on average. Judgments: 2 = what this person
wants, 1 = partly; P@5 and MRR count both as relevant.

``--folds K`` also splits the profiles into K folds (fixed shuffle) and prints each
ranking's mean per fold, and the one knob the ranking has that a person might tune,
``semantic_weight``, cross-validated: chosen from a grid on K-1 folds, measured on the one
left out. ``--likes N`` simulates a reader's first likes: each profile likes its N best
judged papers, which are then left out of the candidates and the judgments, and the
ranking with and without those likes is measured on what remains.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from newsletter.models import Paper, Status, Subscriber
from newsletter.ranking import semantic
from newsletter.ranking.engine import RankingParams, SemanticInputs, Signals, rank
from newsletter.settings import Settings

EVAL = Path(__file__).resolve().parent / "data" / "eval"
DEPTH = 10
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)

Metrics = tuple[float, float, float]


def metrics(ranked: list[str], judgments: dict[str, int]) -> Metrics:
    gains = [judgments.get(pid, 0) for pid in ranked[:DEPTH]]
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(judgments.values(), reverse=True)[:DEPTH]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    precision = sum(1 for g in gains[:5] if g > 0) / 5
    first = next((i for i, g in enumerate(gains) if g > 0), None)
    return dcg / idcg if idcg else 0.0, precision, 1 / (first + 1) if first is not None else 0.0


def top(papers: list[Paper], scores: np.ndarray) -> list[list[str]]:
    return [[papers[i].id for i in np.argsort(-row, kind="stable")[:DEPTH]] for row in scores]


def texts(papers: list[Paper]) -> list[str]:
    return [f"{p.title} {p.abstract}" for p in papers]


def tfidf(papers: list[Paper], profiles: list[dict]) -> list[list[str]]:
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    docs = vectorizer.fit_transform(texts(papers))
    scores = (vectorizer.transform([p["interests"] for p in profiles]) @ docs.T).toarray()
    return top(papers, scores)


def bm25(papers: list[Paper], profiles: list[dict], k1: float = 1.2, b: float = 0.75):
    counter = CountVectorizer(stop_words="english")
    counts = counter.fit_transform(texts(papers)).tocoo()
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.bincount(counts.col, minlength=counts.shape[1])
    idf = np.log(1 + (len(papers) - frequency + 0.5) / (frequency + 0.5))
    saturation = counts.data * (k1 + 1)
    saturation /= counts.data + k1 * (1 - b + b * lengths[counts.row] / lengths.mean())
    weights = sp.csr_matrix((saturation * idf[counts.col], (counts.row, counts.col)), counts.shape)
    query = counter.transform([p["interests"] for p in profiles])
    query.data[:] = 1
    return top(papers, (query @ weights.T).toarray())


def embedding_cosine(
    papers: list[Paper], profiles: list[dict], model: semantic.Embedder
) -> list[list[str]]:
    """Plain cosine of one embedding per paper (title and abstract, as the model truncates
    them) and one per profile."""
    docs = model.embed([f"{p.title}. {p.abstract}" for p in papers])
    return top(papers, model.embed([p["interests"] for p in profiles]) @ docs.T)


@dataclasses.dataclass
class Product:
    """The newsletter's ranking over the development set, its embeddings computed once."""

    papers: list[Paper]
    profiles: list[dict]
    model: semantic.Embedder | None

    def __post_init__(self) -> None:
        self.subscribers = [
            Subscriber(
                id=i,
                email=f"p{i}@example.org",
                status=Status.ACTIVE,
                timezone="UTC",
                delivery_hour=7,
                max_papers=DEPTH,
                interests=p["interests"],
            )
            for i, p in enumerate(self.profiles)
        ]
        if self.model is not None:
            self.vectors = semantic.embed_papers(self.model, self.papers)
            self.interests = self.model.embed([s.interests for s in self.subscribers])
            self.centroids = self.vectors.centroids()

    def run(
        self,
        params: RankingParams,
        hybrid: bool,
        liked: dict[int, list[Paper]] | None = None,
        eligible: np.ndarray | None = None,
    ) -> list[list[str]]:
        inputs = None
        if hybrid and self.model is not None:
            index = {p.id: i for i, p in enumerate(self.papers)}
            feedback = {
                p.id: self.centroids[index[p.id]] for ps in (liked or {}).values() for p in ps
            }
            inputs = SemanticInputs(papers=self.vectors, profiles=self.interests, feedback=feedback)
        if eligible is None:
            eligible = np.ones((len(self.subscribers), len(self.papers)), dtype=bool)
        signals = Signals(liked=liked or {})
        picks = rank(
            self.subscribers, self.papers, eligible, params, signals=signals, semantic=inputs
        )
        return [[pick.paper.id for pick in picks[s.id]] for s in self.subscribers]


def folds(count: int, k: int) -> list[np.ndarray]:
    order = list(range(count))
    random.Random(0).shuffle(order)
    return [np.sort(order[i::k]) for i in range(k)]


def cross_validated(per_knob: dict[float, np.ndarray], parts: list[np.ndarray]):
    """Each fold measured with the knob that is best on the other folds."""
    result = np.zeros_like(next(iter(per_knob.values())))
    chosen = []
    for part in parts:
        train = np.setdiff1d(np.arange(len(result)), part)
        best = max(per_knob, key=lambda knob: per_knob[knob][train, 0].mean())
        chosen.append(best)
        result[part] = per_knob[best][part]
    return result, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=Path, default=EVAL / "papers.jsonl")
    parser.add_argument("--profiles", type=Path, default=EVAL / "profiles-dev.json")
    parser.add_argument("--semantic", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--folds", type=int, default=0, help="cross-validate over K folds")
    parser.add_argument("--likes", type=int, default=0, help="simulate N first likes")
    args = parser.parse_args()
    papers = [
        Paper(id=r["id"], title=r["title"], abstract=r["abstract"])
        for r in map(json.loads, args.papers.read_text().splitlines())
    ]
    profiles = json.loads(args.profiles.read_text())
    settings = dataclasses.replace(Settings(), semantic=args.semantic)
    params = RankingParams.from_settings(settings)
    model = semantic.embedder(settings)
    product = Product(papers, profiles, model)
    print(f"{len(papers)} papers, {len(profiles)} profiles")

    rankings = {
        "TF-IDF cosine": tfidf(papers, profiles),
        "BM25": bm25(papers, profiles),
    }
    if model is not None:
        rankings["MiniLM cosine"] = embedding_cosine(papers, profiles, model)
    rankings["newsletter, lexical"] = product.run(params, hybrid=False)
    if model is not None:
        rankings["newsletter, semantic"] = product.run(params, hybrid=True)
    measured = {
        name: np.array([metrics(r, p["judgments"]) for r, p in zip(ranked, profiles, strict=True)])
        for name, ranked in rankings.items()
    }
    names = list(measured)
    print("\nnDCG@10 per profile")
    print(f"  {'profile':<8}" + "".join(f"{n[-18:]:>20}" for n in names))
    for i, profile in enumerate(profiles):
        print(f"  {profile['id']:<8}" + "".join(f"{measured[n][i, 0]:20.3f}" for n in names))
    parts = folds(len(profiles), args.folds) if args.folds > 1 else []
    if model is not None and parts:
        per_weight = {
            w: np.array(
                [
                    metrics(r, p["judgments"])
                    for r, p in zip(
                        product.run(dataclasses.replace(params, semantic_weight=w), True),
                        profiles,
                        strict=True,
                    )
                ]
            )
            for w in WEIGHTS
        }
        measured["newsletter, semantic, weight by CV"], chosen = cross_validated(per_weight, parts)
        print(f"\nsemantic_weight chosen on the other folds: {chosen} (grid {list(WEIGHTS)})")
    print(f"\n  {'ranking':<36} {'nDCG@10':>8} {'P@5':>6} {'MRR':>6} {'worst':>7}", end="")
    print("  " + " ".join(f"fold{k + 1:<2}" for k in range(len(parts))) if parts else "")
    for name, rows in measured.items():
        mean = rows.mean(axis=0)
        line = f"  {name:<36} {mean[0]:8.3f} {mean[1]:6.2f} {mean[2]:6.2f} {rows[:, 0].min():7.3f}"
        if parts:
            fold_means = [rows[part, 0].mean() for part in parts]
            line += "  " + " ".join(f"{m:6.3f}" for m in fold_means)
            line += f"  (spread {min(fold_means):.3f}-{max(fold_means):.3f})"
        print(line)
    if args.likes:
        likes(product, params, profiles, args.likes, model is not None)


def likes(product: Product, params: RankingParams, profiles: list[dict], count: int, hybrid: bool):
    """Each profile likes its ``count`` best judged papers; measured on the others."""
    index = {p.id: i for i, p in enumerate(product.papers)}
    liked, eligible, remaining = {}, np.ones((len(profiles), len(product.papers)), bool), []
    for i, profile in enumerate(profiles):
        best = sorted(profile["judgments"], key=lambda pid: -profile["judgments"][pid])[:count]
        liked[i] = [product.papers[index[pid]] for pid in best]
        eligible[i, [index[pid] for pid in best]] = False
        remaining.append({k: v for k, v in profile["judgments"].items() if k not in best})
    print(f"\nfirst likes: each profile likes its {count} best judged papers (left out after)")
    for label, kind in [("lexical", False), ("semantic", True)][: 2 if hybrid else 1]:
        for name, signal in [("before", None), ("after", liked)]:
            ranked = product.run(params, kind, liked=signal, eligible=eligible)
            rows = np.array([metrics(r, j) for r, j in zip(ranked, remaining, strict=True)])
            mean = rows.mean(axis=0)
            print(
                f"  {label:<9} {name:<7} nDCG@10 {mean[0]:.3f}  P@5 {mean[1]:.2f}  MRR {mean[2]:.2f}"
            )


if __name__ == "__main__":
    main()
