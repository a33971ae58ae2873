"""Ranking: score every candidate paper for every subscriber at once, pick the best few.

How a paper is chosen for a subscriber:

1. **Relevance.** A TF-IDF model (scikit-learn) over title and abstract, with an analyzer that
   reads interests the way people type them (case, accents, arXiv's TeX accents, hyphens,
   plurals and filler words do not matter; two-word phrases count extra). The interests are
   then expanded with the vocabulary of the papers that match them best (pseudo-relevance
   feedback, as RM3 does), and moved towards the papers the subscriber liked and away from
   those they disliked (Rocchio). With the semantic extra, sentence-embedding similarity is
   blended in, measured from the corpus's average passage and expanded the same way.
2. **Signals.** A bonus for the subscriber's arXiv categories, the trending signal (upvotes,
   log-scaled) and recency, with weights in the settings.
3. **Rules.** Papers below the minimum relevance, mentioning a muted term, outside the
   categories (when the subscriber asked for a filter) or not new to the subscriber are out;
   papers by a followed author are always in.
4. **Diversity.** Maximal marginal relevance over the top candidates, and at most a share of
   the email from one category.

Every step works on matrices for a block of subscribers at a time; nothing loops over
(subscriber, paper) pairs. Each pick carries the reason it was chosen.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from ..models import Paper, Pick, Subscriber
from ..settings import Settings
from .semantic import PaperVectors, center
from .trend import age_days, has_signal, trending_order, trending_reason, trending_score

#: Words that say nothing about a research interest, as people write interests.
PROFILE_FILLER = frozenset(
    {
        "interested", "interest", "interests", "work", "working", "works", "research",
        "researcher", "paper", "papers", "study", "studies", "topic", "topics", "area",
        "areas", "especially", "particular", "particularly", "like", "mainly", "mostly",
        "related", "also", "etc", "things", "new", "approach", "approaches", "using",
        "based", "method", "methods", "problem", "problems", "result", "results",
    }
)  # fmt: skip
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | PROFILE_FILLER
_TEX_ACCENT = re.compile(r"\\[\"'`^~=.uvHc]\s*\{?([A-Za-z])\}?")
_TOKEN = re.compile(r"[a-z][a-z0-9]+|[0-9]+[a-z][a-z0-9]*")
#: A word as a muted term's edges are drawn: muting "ML" is not muting "HTML" or "ML_2".
_WORD = re.compile(r"\w+")
#: Up to this many distinct muted terms, each is searched for in each paper; beyond, each
#: paper's words are listed once (as long as about this many searches take) and the terms
#: looked up among them. Either way a paper takes a bounded time, whatever the terms.
SEARCHED_TERMS = 100
#: Rows of subscribers scored per matrix product: bounds memory at BLOCK x papers floats.
BLOCK = 2048
#: Blocks ranked at once: the matrix products and sorts release the GIL, so a second
#: thread keeps a second core busy (1.4 times faster on two cores), for one more block of
#: memory.
RANK_THREADS = min(2, os.cpu_count() or 1)
#: Temperature of the expansion's weights, relative to the best first-stage score.
EXPANSION_TEMPERATURE = 0.2
#: TF-IDF cosine from which a pick is said to resemble a paper the subscriber liked.
LIKED_RESEMBLANCE = 0.05
#: A followed author's paper is chosen before anything else.
FOLLOWED = np.inf


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
    if text.isascii():  # most text: nothing to decompose
        return text.lower()
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
class RankingParams:
    """The knobs of the ranking; :meth:`from_settings` fills them from the settings."""

    #: Minimum lexical relevance (cosine) for a paper to be sent at all.
    min_score: float = 0.04
    #: Minimum plain embedding cosine that also makes a paper relevant; for a reader with
    #: such clear matches, the same bar on the field-relative similarity (semantic extra).
    semantic_min_score: float = 0.35
    #: Share of the semantic model in relevance (0: lexical only).
    semantic_weight: float = 0.6
    category_boost: float = 0.1
    #: Weight of log-scaled upvotes, and of recency (halving every ``recency_half_life`` days).
    trending_weight: float = 0.05
    recency_weight: float = 0.02
    recency_half_life: float = 3.0
    #: Upvotes from which "trending" is named in the reason.
    trending_reason_from: int = 10
    #: Rocchio weights of the liked and disliked papers.
    like_weight: float = 0.75
    dislike_weight: float = 0.5
    #: Pseudo-relevance feedback: papers and terms taken, and their share of the query.
    expansion_papers: int = 10
    expansion_terms: int = 50
    expansion_weight: float = 0.5
    #: MMR trade-off (1: relevance only) and the most of one email from one category.
    diversity: float = 0.9
    max_category_share: float = 0.6
    #: Similarity (TF-IDF cosine) above which a paper counts as a near-duplicate of a pick.
    near_duplicate: float = 0.8

    @classmethod
    def from_settings(cls, settings: Settings) -> RankingParams:
        """The settings' values for every knob they name; defaults for the others."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(settings, n) for n in names if hasattr(settings, n)})


@dataclass
class Signals:
    """What a subscriber told us beyond their interests: the papers they liked and disliked."""

    liked: dict[int, list[Paper]] = field(default_factory=dict)
    disliked: dict[int, list[Paper]] = field(default_factory=dict)


class BlockRows(Protocol):
    """A (subscribers x papers) matrix read a block of rows at a time."""

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


class _SparseRows:
    """A sparse (subscribers x papers) matrix, read a block of dense rows at a time."""

    def __init__(self, matrix: sp.spmatrix | sp.sparray):
        # scipy-stubs declare spmatrix and sparray as mixins that csr_matrix does not take.
        self.matrix = sp.csr_matrix(matrix)  # type: ignore[call-overload]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows].toarray()


@dataclass
class SemanticInputs:
    """Sentence embeddings (L2-normalized) from :mod:`newsletter.ranking.semantic`."""

    #: The candidates' passages, in the order of ``papers``.
    papers: PaperVectors
    #: The subscribers' interests, in order.
    profiles: np.ndarray
    #: One vector per liked or disliked paper, by id.
    feedback: Mapping[str, np.ndarray]
    #: The corpus's average passage, which similarities are measured from (default: see
    #: ``PaperVectors.reference_point``); like IDF, it needs more papers than a thin day has.
    center: np.ndarray | None = None


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


def rank(
    subscribers: Sequence[Subscriber],
    papers: Sequence[Paper],
    eligible: np.ndarray | sp.spmatrix | sp.sparray | BlockRows,
    params: RankingParams,
    corpus: Sequence[Paper] | None = None,
    signals: Signals | None = None,
    semantic: SemanticInputs | None = None,
    now: datetime | None = None,
) -> dict[int, list[Pick]]:
    """Each subscriber's papers, best first.

    ``eligible`` is a (subscribers x papers) boolean matrix: False where a paper is not a
    candidate for that subscriber (already sent, older than their last edition, ...); or
    anything that gives its rows for a block of subscribers (``eligible[rows]``), so that
    the whole matrix need not exist.
    ``corpus`` (default: ``papers``) fits the term weights, so that a thin day still has
    sensible IDF values.
    """
    if not subscribers or not papers:
        return {s.id: [] for s in subscribers}
    ranker = _Ranker(
        subscribers, papers, params, corpus or papers, signals or Signals(), semantic, now
    )
    rows_of: BlockRows = (
        _SparseRows(eligible) if isinstance(eligible, sp.spmatrix | sp.sparray) else eligible
    )

    def block(start: int) -> dict[int, list[Pick]]:
        rows = np.arange(start, min(start + BLOCK, len(subscribers)))
        return ranker.block(rows, np.asarray(rows_of[rows]).astype(bool))

    picks: dict[int, list[Pick]] = {}
    with ThreadPoolExecutor(RANK_THREADS, thread_name_prefix="rank") as pool:
        for part in pool.map(block, range(0, len(subscribers), BLOCK)):
            picks.update(part)
    return picks


class _Ranker:
    """The matrices shared by all blocks of subscribers, and the per-block steps."""

    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        papers: Sequence[Paper],
        params: RankingParams,
        corpus: Sequence[Paper],
        signals: Signals,
        semantic: SemanticInputs | None,
        now: datetime | None,
    ):
        self.subscribers, self.papers, self.params = subscribers, papers, params
        self.semantic = semantic
        self.model = LexicalModel(corpus)
        self.paper_vectors = self.model.papers(papers)
        self.terms: list[str] = self.model.terms.tolist()
        #: Transposed once (terms x papers): each block multiplies by it twice.
        self.paper_terms = self.paper_vectors.T.tocsr()
        #: Paper-to-paper cosine, for diversity: once for every block.
        self.similarity = _Similarity(self.paper_vectors, self.paper_terms)
        self.queries = self.model.queries([s.interests for s in subscribers])
        self.categories = _shared_labels(
            [s.categories for s in subscribers], [p.categories for p in papers]
        )
        self.followed = _shared_labels(
            [[fold(a) for a in s.followed_authors] for s in subscribers],
            [[fold(a) for a in p.authors] for p in papers],
        )
        self.muted = mentions([s.muted_terms for s in subscribers], papers)
        self.limits = np.array([max(0, s.max_papers) for s in subscribers])
        self.categories_alone = np.array(
            [not s.interests.strip() and bool(s.categories) for s in subscribers]
        )
        self.category_only = np.array(
            [s.categories_only and bool(s.categories) for s in subscribers]
        )
        self.boosts = params.trending_weight * _trending(papers) + params.recency_weight * _recency(
            papers, now or datetime.now(UTC), params.recency_half_life
        )
        self.signals = signals
        self.liked, self.disliked, self.feedback_papers = self._feedback_matrices()
        self._prepare_trending(now or datetime.now(UTC))
        self.feedback_vectors = (
            self.model.papers(self.feedback_papers) if self.feedback_papers else None
        )
        if semantic is not None:
            self._prepare_semantic(semantic)
        # A paper marked "less like this" is never shown to that subscriber again.
        self.disliked_papers = _shared_labels(
            [[p.id for p in signals.disliked.get(s.id, [])] for s in subscribers],
            [[p.id] for p in papers],
        ).astype(bool)

    def _prepare_trending(self, now: datetime) -> None:
        """The papers' places on the day's trending list (:mod:`newsletter.ranking.trend`),
        for the readers who gave no interests."""
        day = now.astimezone(UTC).date()
        self.trend_position = np.empty(len(self.papers), dtype=int)
        self.trend_position[trending_order(self.papers, day)] = np.arange(1, len(self.papers) + 1)
        self.trend_scores = np.array(
            [trending_score(p.upvotes, age_days(p.first_seen_at, day)) or 0.0 for p in self.papers]
        )
        self.trending = np.array([has_signal(p) for p in self.papers], dtype=bool)
        self.no_interests = np.array(
            [not s.interests.strip() for s in self.subscribers], dtype=bool
        )

    def _prepare_semantic(self, semantic: SemanticInputs) -> None:
        """The passages and feedback papers as they are (for the threshold) and measured
        from the corpus's average passage (for ranking)."""
        mean = semantic.papers.reference_point() if semantic.center is None else semantic.center
        self.center = mean
        # An empty interests text embeds to somewhere: it must count as no interest at all.
        self.described = np.array([bool(s.interests.strip()) for s in self.subscribers])
        self.passages = semantic.papers.centered(mean)
        self.passage_centroids = self.passages.centroids()
        dim = semantic.profiles.shape[1]
        plain = np.zeros((len(self.feedback_papers), dim), np.float32)
        for k, paper in enumerate(self.feedback_papers):
            if paper.id in semantic.feedback:
                plain[k] = semantic.feedback[paper.id]
        known = np.linalg.norm(plain, axis=1, keepdims=True) > 0
        self.feedback_embeddings = plain
        self.centered_feedback = np.where(known, center(plain, mean), 0)

    def _feedback_matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix, list[Paper]]:
        """(subscribers x feedback papers) averaging matrices for liked and disliked papers."""
        known: dict[str, int] = {}
        feedback_papers: list[Paper] = []
        for groups in (self.signals.liked, self.signals.disliked):
            for group in groups.values():
                for paper in group:
                    if paper.id not in known:
                        known[paper.id] = len(feedback_papers)
                        feedback_papers.append(paper)

        def averaging(groups: dict[int, list[Paper]]) -> sp.csr_matrix:
            rows, cols, weights = [], [], []
            for row, subscriber in enumerate(self.subscribers):
                group = groups.get(subscriber.id, [])
                for paper in group:
                    rows.append(row)
                    cols.append(known[paper.id])
                    weights.append(1 / len(group))
            shape = (len(self.subscribers), max(1, len(feedback_papers)))
            return sp.csr_matrix((weights, (rows, cols)), shape=shape, dtype=np.float32)

        return averaging(self.signals.liked), averaging(self.signals.disliked), feedback_papers

    def block(self, rows: np.ndarray, eligible: np.ndarray) -> dict[int, list[Pick]]:
        p = self.params
        query = self._expanded_queries(rows)
        lexical = (query @ self.paper_terms).toarray()
        relevant = lexical >= p.min_score
        # A reader who gave only categories gets the papers in them.
        relevant |= self.categories_alone[rows, None] & (self.categories[rows].toarray() > 0)
        relevance = lexical
        if self.semantic is not None and p.semantic_weight > 0:
            similarity, semantic = self._semantic_relevance(rows, self.semantic)
            # Plain cosine says whether a paper is on the reader's subject at all; for a
            # reader with such clear matches, the ranking's similarity also admits papers.
            clear = similarity >= p.semantic_min_score
            in_field = clear.any(axis=1, keepdims=True)
            # A word in common is not enough where the paper is no closer to the interests
            # than the average paper ("dark matter" and "learning dynamics matters").
            relevant &= (semantic > 0) | ~self.described[rows, None]
            relevant |= clear | (in_field & (semantic >= p.semantic_min_score))
            relevance = _blend(lexical, semantic, p.semantic_weight)
        in_category = self.categories[rows].toarray() > 0
        scores = relevance + p.category_boost * in_category + self.boosts[None, :]
        allowed = (
            eligible & (self.muted[rows].toarray() == 0) & ~self.disliked_papers[rows].toarray()
        )
        followed = (self.followed[rows].toarray() > 0) & allowed
        allowed &= in_category | ~self.category_only[rows, None]
        # A reader who gave no interests and whom no paper suits otherwise (by their
        # categories, or the papers they liked) gets the day's trending papers instead.
        trendable = allowed & self.trending[None, :]
        allowed &= relevant
        by_trend = self.no_interests[rows] & ~allowed.any(axis=1)
        scores[~allowed] = -np.inf
        # Readers with the same number of papers together: one reader's 50 must not make the
        # whole block weigh 50 candidates each.
        chosen: list[list[int]] = [[] for _ in rows]
        limits = self.limits[rows]
        for limit in np.unique(limits):
            group = np.flatnonzero(limits == limit)
            picks = _diverse_top(
                scores[group],
                followed[group],
                limits[group],
                self.similarity,
                self.papers,
                p.diversity,
                p.max_category_share,
                p.near_duplicate,
            )
            for row, picked in zip(group, picks, strict=True):
                chosen[row] = picked
        if by_trend.any():
            trend_rows = np.flatnonzero(by_trend)
            for row, picked in zip(
                trend_rows,
                self._trending_picks(
                    trendable[trend_rows], followed[trend_rows], limits[trend_rows]
                ),
                strict=True,
            ):
                chosen[row] = picked
            scores[trend_rows] = self.trend_scores[None, :]
        return self._picks(rows, chosen, scores, by_trend)

    def _trending_picks(
        self, candidates: np.ndarray, followed: np.ndarray, limits: np.ndarray
    ) -> list[list[int]]:
        """Each row's papers in the order of the day's trending list, its followed authors'
        papers first, as many as the row's limit."""
        count = int(limits.max(initial=0))
        if count == 0:
            return [[] for _ in limits]
        places = len(self.papers) + 1
        order = np.where(candidates, self.trend_position[None, :], places).astype(float)
        order = np.where(followed, order - places, order)
        top = _top_columns(-order, min(count, order.shape[1]))
        return [
            [int(c) for c in top[i, : limits[i]] if order[i, c] < places]
            for i in range(len(limits))
        ]

    def _expanded_queries(self, rows: np.ndarray) -> sp.csr_matrix:
        """Interests, expanded with their best matches' vocabulary, plus liked and minus
        disliked papers (Rocchio)."""
        p = self.params
        query = normalize(self.queries[rows])
        if p.expansion_weight > 0 and p.expansion_papers > 0:
            first = (query @ self.paper_terms).toarray()
            first[first < p.min_score] = 0  # only real matches are evidence
            centroid = _centroid_weights(first, p.expansion_papers) @ self.paper_vectors
            centroid = normalize(_prune_rows(centroid, p.expansion_terms))
            # Expand only as far as the evidence goes: one matching paper is not a topic.
            evidence = np.minimum(1, (first > 0).sum(axis=1) / p.expansion_papers)
            weight = (p.expansion_weight * evidence).astype(np.float32)
            query = normalize(_scale_rows(query, 1 - weight) + _scale_rows(centroid, weight))
        if self.feedback_vectors is not None:
            liked = normalize(self.liked[rows] @ self.feedback_vectors)
            disliked = normalize(self.disliked[rows] @ self.feedback_vectors)
            query = query + p.like_weight * liked - p.dislike_weight * disliked
        return sp.csr_matrix(query)

    def _semantic_relevance(
        self, rows: np.ndarray, semantic: SemanticInputs
    ) -> tuple[np.ndarray, np.ndarray]:
        """The plain cosine of interests (with feedback) and papers, which the threshold
        reads; and the relevance that ranks: the same, measured from the corpus's average
        passage and expanded with the best matches, as the lexical query is."""
        p = self.params
        described = self.described[rows, None]
        profiles = np.where(described, semantic.profiles[rows], 0)
        similarity = semantic.papers.best_passage(
            normalize(self._semantic_feedback(rows, profiles, self.feedback_embeddings))
        )
        centered = np.where(described, center(profiles, self.center), 0)
        query = normalize(self._semantic_feedback(rows, centered, self.centered_feedback))
        if p.expansion_weight > 0 and p.expansion_papers > 0:
            first = self.passages.best_passage(query)
            centroid = normalize(
                _centroid_weights(first, p.expansion_papers) @ self.passage_centroids
            )
            evidence = np.minimum(
                1, (similarity >= p.semantic_min_score).sum(axis=1) / p.expansion_papers
            )
            weight = (p.expansion_weight * evidence).astype(np.float32)[:, None]
            query = normalize((1 - weight) * query + weight * centroid)
        return similarity, self.passages.best_passage(query)

    def _semantic_feedback(
        self, rows: np.ndarray, profiles: np.ndarray, feedback: np.ndarray
    ) -> np.ndarray:
        """Profiles moved towards liked and away from disliked papers (Rocchio)."""
        if not self.feedback_papers:
            return profiles
        return (
            profiles
            + self.params.like_weight * normalize(self.liked[rows] @ feedback)
            - self.params.dislike_weight * normalize(self.disliked[rows] @ feedback)
        )

    def _picks(
        self,
        rows: np.ndarray,
        chosen: list[list[int]],
        scores: np.ndarray,
        by_trend: np.ndarray,
    ) -> dict[int, list[Pick]]:
        block_rows = np.repeat(np.arange(len(chosen)), [len(cols) for cols in chosen])
        pick_cols = np.array([c for cols in chosen for c in cols], dtype=int)
        reasons = iter(self._reasons(rows[block_rows], pick_cols, by_trend[block_rows]))
        # A followed author's paper may be below every threshold: it scores 0.
        pick_scores = scores[block_rows, pick_cols]
        values = iter(np.where(np.isfinite(pick_scores), pick_scores, 0.0).tolist())
        return {
            self.subscribers[rows[i]].id: [
                Pick(self.papers[c], next(values), next(reasons), by_trend=bool(by_trend[i]))
                for c in cols
            ]
            for i, cols in enumerate(chosen)
        }

    def _reasons(self, rows: np.ndarray, cols: np.ndarray, by_trend: np.ndarray) -> list[str]:
        """For each pick: the interest terms it matched, the liked paper it resembles, the
        followed author, the category and the trending signal, in a few words; for a pick
        ``by_trend`` (a reader who gave no interests), its place on the trending list."""
        if len(rows) == 0:
            return []
        matched = _top_terms(
            self.terms, self.queries[rows].multiply(self.paper_vectors[cols]).tocsr()
        )
        liked_similar = self._liked_resemblance(rows, cols)
        reasons = []
        surface: dict[int, _Surface] = {}  # per subscriber, not per pick
        for k, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
            subscriber, paper = self.subscribers[row], self.papers[col]
            parts = []
            if subscriber.followed_authors:
                authors = {fold(a) for a in subscriber.followed_authors}
                followed = [a for a in paper.authors if fold(a) in authors]
                if followed:
                    parts.append(f"by {followed[0]}, whom you follow")
            if by_trend[k]:
                if not parts or self.trending[col]:
                    parts.append(trending_reason(paper.upvotes, int(self.trend_position[col])))
                reasons.append("; ".join(parts))
                continue
            terms = matched[k]
            if terms:
                if row not in surface:
                    surface[row] = _Surface(subscriber.interests)
                shown = surface[row].show(terms)
                parts.append("matches your interests: " + ", ".join(shown))
            if liked_similar[k]:
                parts.append(f"like “{liked_similar[k]}”, which you liked")
            if subscriber.categories:
                shared = [c for c in paper.categories if c in subscriber.categories]
                if shared:
                    parts.append(f"in {shared[0]}, one of your categories")
            if (paper.upvotes or 0) >= self.params.trending_reason_from:
                parts.append(f"trending: {paper.upvotes} upvotes")
            reasons.append("; ".join(parts) or "close in topic to your interests")
        return reasons

    def _liked_resemblance(self, rows: np.ndarray, cols: np.ndarray) -> list[str | None]:
        """The title of the liked paper most like each pick, where one is clearly alike."""
        titles: list[str | None] = [None] * len(rows)
        liked = self.liked[rows]
        likers = np.flatnonzero(liked.getnnz(axis=1))  # the few picks whose reader liked one
        if len(likers) == 0 or self.feedback_vectors is None:
            return titles
        similarity = (self.paper_vectors[cols[likers]] @ self.feedback_vectors.T).toarray()
        similarity[liked[likers].toarray() == 0] = 0
        best = similarity.argmax(axis=1)
        for k, pick in enumerate(likers):
            if similarity[k, best[k]] >= LIKED_RESEMBLANCE:
                titles[pick] = self.feedback_papers[best[k]].title
        return titles


def _blend(lexical: np.ndarray, semantic: np.ndarray, weight: float) -> np.ndarray:
    """Lexical and semantic relevance on one scale: both standardized per subscriber,
    mixed, and mapped back onto the lexical scale (so weights and bonuses keep their
    meaning), or onto the semantic one for a subscriber no paper matches in words."""

    def standard(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-9)

    mixed = (1 - weight) * standard(lexical) + weight * standard(semantic)
    worded = lexical.std(axis=1, keepdims=True) > 0
    scale = np.where(worded, lexical, semantic)
    return scale.mean(axis=1, keepdims=True) + scale.std(axis=1, keepdims=True) * mixed


def _centroid_weights(scores: np.ndarray, count: int) -> sp.csr_matrix:
    """Per row, the weights that average the best-scoring papers' vectors (multiply by the
    vectors): a softmax of their scores relative to the best one."""
    count = min(count, scores.shape[1])
    top = np.argpartition(-scores, count - 1, axis=1)[:, :count]
    best = np.take_along_axis(scores, top, axis=1)
    peak = best.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.exp((best / np.where(peak > 0, peak, 1) - 1) / EXPANSION_TEMPERATURE)
    weights[(best <= 0) | (peak <= 0)] = 0  # no match, nothing to learn from
    sums = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)
    rows = np.repeat(np.arange(scores.shape[0]), count)
    return sp.csr_matrix((weights.ravel(), (rows, top.ravel())), shape=scores.shape)


def _prune_rows(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Each row's ``keep`` largest entries (the expansion terms), the rest dropped. The rows
    are laid out in a padded dense array so one partition finds every row's threshold."""
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    if lengths.max(initial=0) <= keep:
        return matrix
    row_of = np.repeat(np.arange(matrix.shape[0], dtype=matrix.indptr.dtype), lengths)
    position = np.arange(len(matrix.data), dtype=matrix.indptr.dtype) - matrix.indptr[row_of]
    padded = np.full((matrix.shape[0], lengths.max()), -np.inf, dtype=np.float32)
    padded[row_of, position] = matrix.data
    threshold = np.partition(padded, -keep, axis=1)[:, -keep]
    kept = matrix.data >= threshold[row_of]
    pruned = sp.csr_matrix((matrix.data * kept, matrix.indices, matrix.indptr), shape=matrix.shape)
    pruned.eliminate_zeros()
    return pruned


def _scale_rows(matrix: sp.csr_matrix, factors: np.ndarray) -> sp.csr_matrix:
    """``matrix`` with row i multiplied by ``factors[i]``."""
    data = matrix.data * np.repeat(factors, np.diff(matrix.indptr))
    return sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)


class _Similarity:
    """Cosine between papers (their vectors are L2-normalized): a dense matrix computed
    once when the papers are few enough (4,096 papers: 64 MB), else for each block's
    candidates."""

    LIMIT = 4096

    def __init__(self, vectors: sp.csr_matrix, transposed: sp.csr_matrix):
        self.vectors = vectors
        self.full = (vectors @ transposed).toarray() if vectors.shape[0] <= self.LIMIT else None

    def among(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of each paper in the matrix, -1 if absent; the matrix) for
        ``candidates``."""
        if self.full is not None:
            return np.arange(self.vectors.shape[0]), self.full
        unique = np.unique(candidates)
        position = np.full(self.vectors.shape[0], -1)
        position[unique] = np.arange(len(unique))
        return position, (self.vectors[unique] @ self.vectors[unique].T).toarray()


def _diverse_top(
    scores: np.ndarray,
    forced: np.ndarray,
    limits: np.ndarray,
    similarities: _Similarity,
    papers: Sequence[Paper],
    trade_off: float,
    max_share: float,
    near_duplicate: float,
) -> list[list[int]]:
    """Each row's picks, by maximal marginal relevance over its best candidates: a pick
    pays for its similarity to the ones already chosen, a near-duplicate of one (cosine at
    least ``near_duplicate``: another version, the same work from another source) is left
    out, and no category may fill more than ``max_share`` of the email. ``forced``
    candidates (followed authors) come first."""
    count = int(limits.max(initial=0))
    if count == 0:
        return [[] for _ in range(scores.shape[0])]
    ranked = np.where(forced, FOLLOWED, scores)
    # Followed authors' papers beyond a reader's number are never picked: a reader following
    # prolific authors does not widen everyone's candidates.
    most_forced = int(np.minimum(forced.sum(axis=1), limits).max(initial=0))
    width = min(scores.shape[1], 3 * count + most_forced)
    candidates = _top_columns(ranked, width)
    value = np.take_along_axis(ranked, candidates, axis=1)
    is_forced = np.take_along_axis(forced, candidates, axis=1)
    usable = np.isfinite(value) | is_forced
    base = np.take_along_axis(scores, candidates, axis=1)
    peak = np.where(usable & ~is_forced, base, -np.inf).max(axis=1, keepdims=True)
    relevance = np.where(np.isfinite(base) & (peak > 0), base / np.where(peak > 0, peak, 1), 0.0)
    position, similarity = similarities.among(candidates)
    labels = [p.categories[0] if p.categories else "" for p in papers]
    label_ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    category = np.array([label_ids[label] for label in labels])[candidates]
    uncapped = label_ids.get("", -1)
    caps = np.maximum(1, np.ceil(max_share * limits)).astype(int)
    counts = np.zeros((scores.shape[0], len(label_ids)), dtype=int)
    redundancy = np.zeros(candidates.shape)
    taken = ~usable
    rows = np.arange(scores.shape[0])
    chosen: list[list[int]] = [[] for _ in rows]
    for step in range(count):
        over_cap = (np.take_along_axis(counts, category, axis=1) >= caps[:, None]) & (
            category != uncapped
        )
        gain = trade_off * relevance - (1 - trade_off) * redundancy
        gain = np.where(is_forced, np.inf, gain)
        duplicate = redundancy >= near_duplicate
        gain[taken | ((over_cap | duplicate) & ~is_forced) | (step >= limits)[:, None]] = -np.inf
        best = gain.argmax(axis=1)
        ok = np.isfinite(gain[rows, best]) | (gain[rows, best] == np.inf)
        ok &= gain[rows, best] > -np.inf
        if not ok.any():
            break
        picked = candidates[rows, best]
        for row in rows[ok]:
            chosen[row].append(int(picked[row]))
        taken[rows[ok], best[ok]] = True
        counts[rows[ok], category[rows[ok], best[ok]]] += 1
        redundancy[ok] = np.maximum(
            redundancy[ok], similarity[position[picked[ok]][:, None], position[candidates[ok]]]
        )
    return chosen


def _top_columns(values: np.ndarray, width: int) -> np.ndarray:
    """Each row's ``width`` highest columns, best first and ties in column order (as a
    stable sort gives them), without sorting the whole row."""
    if width >= values.shape[1]:
        return np.argsort(-values, axis=1, kind="stable")
    kth = -np.partition(-values, width - 1, axis=1)[:, width - 1 : width]
    above = values > kth
    tied = values == kth
    # Of the columns tied with the last one in, the first ones in column order.
    room = width - above.sum(axis=1, keepdims=True)
    keep = above | (tied & (np.cumsum(tied, axis=1) <= room))
    top = np.nonzero(keep)[1].reshape(values.shape[0], width)
    order = np.lexsort((top, -np.take_along_axis(values, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def _top_terms(terms: list[str], contributions: sp.csr_matrix) -> list[list[str]]:
    """For each row, up to three of the terms that contributed most, without repeating a
    word (all rows sorted in one go)."""
    row_of = np.repeat(np.arange(contributions.shape[0]), np.diff(contributions.indptr))
    ranked = contributions.indices[np.lexsort((-contributions.data, row_of))].tolist()
    bounds = contributions.indptr.tolist()
    top = []
    for lo, hi in itertools.pairwise(bounds):
        kept: list[str] = []
        for index in ranked[lo:hi]:
            term = terms[index]
            if kept and any(term in other or other in term for other in kept):
                continue
            kept.append(term)
            if len(kept) == 3:
                break
        top.append(kept)
    return top


class _Surface:
    """An interests text's words as the subscriber typed them, to name matched terms in
    reasons: ``schrodinger`` -> ``Schrödinger``, ``network`` -> ``networks``, and a
    hyphenated word whole where the match covers it (``reaction`` and ``diffusion`` ->
    ``reaction-diffusion``, ``posedness`` -> ``well-posedness``)."""

    def __init__(self, text: str):
        self.typed: dict[str, str] = {}
        #: token -> (the hyphenated word it is part of, that word's tokens)
        self.compounds: dict[str, tuple[str, frozenset[str]]] = {}
        for compound in re.findall(r"[^\W_]+(?:-[^\W_]+)*", text):
            tokens = []
            for word in compound.split("-"):
                for token in _TOKEN.findall(fold(word)):
                    if token not in STOP_WORDS:
                        tokens.append(stem(token))
                        self.typed.setdefault(stem(token), word)
            # "learning-based" names learning: only words like "well-posedness" stay whole.
            if "-" in compound and not any(fold(w) in PROFILE_FILLER for w in compound.split("-")):
                for token in tokens:
                    self.compounds.setdefault(token, (compound, frozenset(tokens)))

    def show(self, terms: list[str]) -> list[str]:
        """The matched ``terms`` (tokens and two-token phrases) in the subscriber's words,
        each once."""
        if not self.compounds:  # most interests: word for word
            return [" ".join([self.typed.get(t, t) for t in term.split()]) for term in terms]
        matched = {token for term in terms for token in term.split()}
        shown = []
        for term in terms:
            words = []
            for token in term.split():
                whole = self.compounds.get(token)
                if whole is not None and whole[1] <= matched:
                    words.append(whole[0])
                else:
                    words.append(self.typed.get(token, token))
            shown.append(" ".join(dict.fromkeys(words)))
        return list(dict.fromkeys(shown))


def _trending(papers: Sequence[Paper]) -> np.ndarray:
    """Upvotes, log-scaled into [0, 1] (100 upvotes or the day's most, whichever is more)."""
    upvotes = np.array([max(0, p.upvotes or 0) for p in papers], dtype=np.float32)
    return np.log1p(upvotes) / math.log1p(max(100.0, float(upvotes.max(initial=0))))


def _recency(papers: Sequence[Paper], now: datetime, half_life: float) -> np.ndarray:
    """1 for a paper published (or first seen) now, halving every ``half_life`` days."""
    ages = []
    for paper in papers:
        stamp = paper.published_at or paper.first_seen_at
        moment = datetime.fromisoformat(stamp) if stamp else now
        ages.append(max(0.0, (now - moment).total_seconds() / 86400))
    return np.power(0.5, np.array(ages, dtype=np.float32) / max(half_life, 1e-6))


def _shared_labels(left: Sequence[list[str]], right: Sequence[list[str]]) -> sp.csr_matrix:
    """(len(left) x len(right)) counts of labels each pair shares."""
    labels = {label: i for i, label in enumerate(sorted({x for xs in [*left, *right] for x in xs}))}

    def indicator(groups: Sequence[list[str]]) -> sp.csr_matrix:
        rows = [r for r, xs in enumerate(groups) for _ in xs]
        cols = [labels[x] for xs in groups for x in xs]
        data = np.ones(len(rows), dtype=np.float32)
        return sp.csr_matrix((data, (rows, cols)), shape=(len(groups), max(1, len(labels))))

    return (indicator(left) @ indicator(right).T).tocsr()


def mentions(term_lists: Sequence[list[str]], papers: Sequence[Paper]) -> sp.csr_matrix:
    """(len(term_lists) x papers) nonzero where a paper mentions one of the row's terms, as
    whole words: muting "ML" does not drop a paper about HTML."""
    terms = sorted({fold(t) for ts in term_lists for t in ts if t.strip()})
    if not terms:
        # scipy-stubs type an empty matrix of a given shape as float64 only.
        return sp.csr_matrix((len(term_lists), len(papers)), dtype=np.float32)  # type: ignore[arg-type]
    texts = [fold(f"{p.title} {p.abstract}") for p in papers]
    if len(terms) <= SEARCHED_TERMS:
        patterns = [_whole(term) for term in terms]
        found = [
            (i, c) for c, text in enumerate(texts) for i, p in enumerate(patterns) if p.search(text)
        ]
    else:
        found = _looked_up(terms, texts)
    term_in_paper = sp.csr_matrix(
        (np.ones(len(found), dtype=np.float32), ([i for i, _ in found], [c for _, c in found])),
        shape=(len(terms), len(papers)),
    )
    index = {t: i for i, t in enumerate(terms)}
    rows = [r for r, ts in enumerate(term_lists) for t in ts if t.strip()]
    cols = [index[fold(t)] for ts in term_lists for t in ts if t.strip()]
    row_terms = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(term_lists), len(terms))
    )
    return (row_terms @ term_in_paper).tocsr()


def _whole(term: str) -> re.Pattern[str]:
    """``term`` with no word character either side. The lookbehind comes last, so that a
    search scans for the term's text (30 times faster than with the lookbehind first)."""
    return re.compile(rf"{re.escape(term)}(?!\w)(?<!\w.{{{len(term)}}})", re.DOTALL)


def _looked_up(terms: list[str], texts: list[str]) -> list[tuple[int, int]]:
    """(term, text) index pairs where the text mentions the term, in one pass over each
    text's words, however many terms there are: a one-word term is looked up among them; a
    longer one ("large language model", "k-means") is searched for only in a text that has
    all of its words."""
    one_word: dict[str, int] = {}
    #: The longest word of each longer term -> those terms, as (index, their words).
    by_word: dict[str, list[tuple[int, set[str]]]] = {}
    wordless: list[tuple[int, set[str]]] = []  # "+": searched for in every text
    for i, term in enumerate(terms):
        term_words = _WORD.findall(term)
        if term_words == [term]:
            one_word[term] = i
        elif term_words:
            by_word.setdefault(max(term_words, key=len), []).append((i, set(term_words)))
        else:
            wordless.append((i, set()))
    patterns: dict[int, re.Pattern[str]] = {}
    found = []
    for col, text in enumerate(texts):
        words = set(_WORD.findall(text))
        found += [(one_word[w], col) for w in words if w in one_word]
        candidates = [c for w in words if w in by_word for c in by_word[w]] + wordless
        for i, needed in candidates:
            if needed <= words:
                if i not in patterns:
                    patterns[i] = _whole(terms[i])
                if patterns[i].search(text):
                    found.append((i, col))
    return found
