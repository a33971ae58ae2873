"""Ranking: score every candidate paper for every subscriber at once, pick the top few.

The lexical model is TF-IDF (scikit-learn) over title and abstract, with an analyzer that
reads interests the way people type them: case, hyphens, plurals and filler words do not
matter, and two-word phrases count extra. Scores for a block of subscribers come from one
sparse matrix product; nothing loops over (subscriber, paper) pairs.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from .models import Paper, Subscriber

#: Words that say nothing about a research interest, as people write interests.
PROFILE_FILLER = frozenset(
    {
        "interested",
        "interest",
        "interests",
        "work",
        "working",
        "works",
        "research",
        "researcher",
        "paper",
        "papers",
        "study",
        "studies",
        "topic",
        "topics",
        "area",
        "areas",
        "especially",
        "particular",
        "particularly",
        "like",
        "mainly",
        "mostly",
        "related",
        "also",
        "etc",
        "things",
        "new",
        "approach",
        "approaches",
        "using",
        "based",
        "method",
        "methods",
        "problem",
        "problems",
        "result",
        "results",
    }
)
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | PROFILE_FILLER
_TEX_ACCENT = re.compile(r"\\[\"'`^~=.uvHc]\s*\{?([A-Za-z])\}?")
_TOKEN = re.compile(r"[a-z][a-z0-9]+|[0-9]+[a-z][a-z0-9]*")
#: Rows of subscribers scored per matrix product: bounds memory at BLOCK x papers floats.
BLOCK = 2048


def stem(token: str) -> str:
    """Fold English plurals onto the singular (networks -> network, studies -> study)."""
    if len(token) <= 3 or token.endswith(("ss", "us", "is", "ics")):
        return token
    if token.endswith("ies") and len(token) > 4:
        return token[:-3] + "y"
    if token.endswith(("ches", "shes", "sses", "xes")):
        return token[:-2]
    if token.endswith("s"):
        return token[:-1]
    return token


def fold(text: str) -> str:
    """Lower-case ASCII letters: ``Schrödinger`` and arXiv's ``Schr\\"odinger`` both read
    ``schrodinger``."""
    text = _TEX_ACCENT.sub(r"\1", text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower()


def analyze(text: str) -> list[str]:
    """Tokens and adjacent-token phrases of ``text``; hyphenated words also count as parts."""
    tokens = [stem(t) for t in _TOKEN.findall(fold(text)) if t not in STOP_WORDS]
    return tokens + [f"{a} {b}" for a, b in itertools.pairwise(tokens)]


def paper_text(paper: Paper) -> str:
    # The title twice: its words say more about the paper than any abstract sentence.
    return f"{paper.title}. {paper.title}. {paper.abstract}"


@dataclass(frozen=True)
class Pick:
    paper: Paper
    score: float
    reason: str


class LexicalModel:
    """TF-IDF vectors for papers and interest texts, in one vocabulary."""

    def __init__(self, corpus: Sequence[Paper]):
        self.vectorizer = TfidfVectorizer(
            analyzer=analyze, sublinear_tf=True, min_df=1, dtype=np.float32
        )
        self.vectorizer.fit([paper_text(p) for p in corpus] or ["empty"])
        self.terms = self.vectorizer.get_feature_names_out()

    def papers(self, papers: Sequence[Paper]) -> sp.csr_matrix:
        return self.vectorizer.transform([paper_text(p) for p in papers]).tocsr()

    def queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.vectorizer.transform(texts).tocsr()


@dataclass
class RankingParams:
    min_score: float
    category_boost: float


def rank(
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    eligible: np.ndarray | sp.spmatrix,
    params: RankingParams,
    corpus: Sequence[Paper] | None = None,
) -> dict[int, list[Pick]]:
    """Each subscriber's best papers, best first.

    ``eligible`` is a (subscribers x papers) boolean matrix: False where a paper is not a
    candidate for that subscriber (already sent, older than their last edition, ...).
    ``corpus`` (default: ``papers``) fits the term weights, so that a thin day still has
    sensible IDF values.
    """
    if not subscribers or not papers:
        return {s.id: [] for s in subscribers}
    model = LexicalModel(corpus or papers)
    paper_vectors = model.papers(papers)
    query_vectors = model.queries([s.interests for s in subscribers])
    category_hits = _shared_labels(
        [s.categories for s in subscribers], [p.categories for p in papers]
    )
    muted = _muted(subscribers, papers)
    limits = np.array([max(0, s.max_papers) for s in subscribers])
    eligible = sp.csr_matrix(eligible) if sp.issparse(eligible) else np.asarray(eligible)

    picks: dict[int, list[Pick]] = {}
    for start in range(0, len(subscribers), BLOCK):
        rows = slice(start, start + BLOCK)
        scores = (query_vectors[rows] @ paper_vectors.T).toarray()
        scores += params.category_boost * (category_hits[rows].toarray() > 0)
        block_ok = eligible[rows]
        block_ok = block_ok.toarray() if sp.issparse(block_ok) else block_ok
        scores[~block_ok.astype(bool)] = -np.inf
        scores[muted[rows].toarray() > 0] = -np.inf
        scores[scores < params.min_score] = -np.inf
        chosen = _top_k(scores, int(limits[rows].max(initial=0)))
        kept = [
            [c for c in columns[: limits[start + offset]] if np.isfinite(scores[offset, c])]
            for offset, columns in enumerate(chosen)
        ]
        pick_rows = np.array([start + o for o, cols in enumerate(kept) for _ in cols], dtype=int)
        pick_cols = np.array([c for cols in kept for c in cols], dtype=int)
        reasons = iter(
            _reasons(model, query_vectors, paper_vectors, category_hits, pick_rows, pick_cols)
        )
        for offset, columns in enumerate(kept):
            picks[subscribers[start + offset].id] = [
                Pick(papers[c], float(scores[offset, c]), next(reasons)) for c in columns
            ]
    return picks


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.empty((scores.shape[0], 0), dtype=int)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _shared_labels(left: Sequence[list[str]], right: Sequence[list[str]]) -> sp.csr_matrix:
    """(len(left) x len(right)) counts of labels each pair shares."""
    labels = {label: i for i, label in enumerate(sorted({x for xs in [*left, *right] for x in xs}))}

    def indicator(groups: Sequence[list[str]]) -> sp.csr_matrix:
        rows = [r for r, xs in enumerate(groups) for _ in xs]
        cols = [labels[x] for xs in groups for x in xs]
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(groups), max(1, len(labels))))

    return (indicator(left) @ indicator(right).T).tocsr()


def _muted(subscribers: Sequence[Subscriber], papers: Sequence[Paper]) -> sp.csr_matrix:
    """(subscribers x papers) nonzero where a paper mentions one of the subscriber's muted terms."""
    terms = sorted({t.lower() for s in subscribers for t in s.muted_terms if t.strip()})
    if not terms:
        return sp.csr_matrix((len(subscribers), len(papers)), dtype=np.float32)
    texts = [f"{p.title} {p.abstract}".lower() for p in papers]
    term_in_paper = sp.csr_matrix(
        np.array([[term in text for text in texts] for term in terms], dtype=np.float32)
    )
    index = {t: i for i, t in enumerate(terms)}
    rows = [r for r, s in enumerate(subscribers) for t in s.muted_terms if t.strip()]
    cols = [index[t.lower()] for s in subscribers for t in s.muted_terms if t.strip()]
    subscriber_terms = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(subscribers), len(terms))
    )
    return (subscriber_terms @ term_in_paper).tocsr()


def _reasons(
    model: LexicalModel,
    queries: sp.csr_matrix,
    papers: sp.csr_matrix,
    category_hits: sp.csr_matrix,
    rows: np.ndarray,
    cols: np.ndarray,
) -> list[str]:
    """For each picked (subscriber row, paper column): the interest terms that contributed
    most to its score, as a short sentence. One sparse product for all picks."""
    if len(rows) == 0:
        return []
    contributions = queries[rows].multiply(papers[cols]).tocsr()
    in_category = np.asarray(category_hits[rows, cols]).ravel() > 0
    reasons = []
    for k in range(len(rows)):
        lo, hi = contributions.indptr[k], contributions.indptr[k + 1]
        order = np.argsort(-contributions.data[lo:hi])
        terms: list[str] = []
        for index in contributions.indices[lo:hi][order]:
            term = str(model.terms[index])
            if any(term in kept or kept in term for kept in terms):
                continue
            terms.append(term)
            if len(terms) == 3:
                break
        parts = []
        if terms:
            parts.append("matches your interests: " + ", ".join(terms))
        if in_category[k]:
            parts.append("in one of your categories")
        reasons.append("; ".join(parts) or "close to your interests")
    return reasons
