"""BM25 as a sparse term-by-passage matrix: scoring a query is a sum of a few matrix rows, no Python loop
over passages, so it stays fast at a million passages. Saved as plain arrays (npz) and a JSON vocabulary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import sparse

STOPWORDS = frozenset(
    """a an the and or but if of at by for with about against between into through during before after above
    below to from up down in out on off over under again further then once here there when where why how all
    any both each few more most other some such no nor not only own same so than too very s t can will just
    don should now is are was were be been being have has had having do does did doing i me my we our ours
    you your he him his she her it its they them their what which who whom this that these those am would
    could shall may might must also as per via tell please give list name say said""".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def stem(word: str) -> str:
    """A light suffix stripper so "funds", "funded" and "funding" meet; deliberately conservative."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed content words."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest non-zero scores, best first, without sorting every row."""
    nonzero = np.flatnonzero(scores)
    if not len(nonzero):
        return nonzero
    k = min(k, len(nonzero))
    best = nonzero[np.argpartition(-scores[nonzero], k - 1)[:k]]
    return best[np.argsort(-scores[best], kind="stable")]


class BM25:
    def __init__(self, vocab: dict[str, int], matrix: sparse.csr_matrix, idf: np.ndarray) -> None:
        self.vocab = vocab
        self.matrix = matrix  # (terms, passages): BM25 weight of each term in each passage
        self.idf = idf

    @classmethod
    def fit(cls, texts: Iterable[str], k1: float = 1.2, b: float = 0.75) -> "BM25":
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths: list[int] = []
        for col, text in enumerate(texts):
            terms = tokens(text)
            lengths.append(len(terms))
            bag: dict[int, int] = {}
            for term in terms:
                tid = vocab.setdefault(term, len(vocab))
                bag[tid] = bag.get(tid, 0) + 1
            rows.extend(bag.keys())
            cols.extend([col] * len(bag))
            counts.extend(bag.values())
        n_docs = len(lengths)
        tf = sparse.csr_matrix(
            (np.asarray(counts, dtype=np.float32), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(len(vocab), n_docs),
        )
        df = np.diff(tf.indptr).astype(np.float32)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        length = np.asarray(lengths, dtype=np.float32)
        norm = k1 * (1 - b + b * length / max(float(length.mean()) if n_docs else 1.0, 1.0))
        weights = tf.tocoo()
        data = weights.data * (k1 + 1) / (weights.data + norm[weights.col]) * idf[weights.row]
        matrix = sparse.csr_matrix((data.astype(np.float32), (weights.row, weights.col)), shape=tf.shape)
        return cls(vocab, matrix, idf)

    def term_ids(self, query: str) -> list[int]:
        return sorted({self.vocab[t] for t in tokens(query) if t in self.vocab})

    def scores(self, query: str) -> np.ndarray:
        ids = self.term_ids(query)
        if not ids:
            return np.zeros(self.matrix.shape[1], dtype=np.float32)
        return np.asarray(self.matrix[ids].sum(axis=0)).ravel()

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        scores = self.scores(query)
        return [(int(i), float(scores[i])) for i in top_rows(scores, k)]

    def idf_of(self, words: Sequence[str]) -> list[float]:
        """IDF of each (already tokenised) word; unseen words get the largest IDF."""
        top = float(self.idf.max()) if len(self.idf) else 1.0
        return [float(self.idf[self.vocab[w]]) if w in self.vocab else top for w in words]

    def save(self, folder: Path) -> list[str]:
        np.savez(
            folder / "lexical.npz", data=self.matrix.data, indices=self.matrix.indices,
            indptr=self.matrix.indptr, shape=np.asarray(self.matrix.shape), idf=self.idf,
        )
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / "lexical_vocab.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        return ["lexical.npz", "lexical_vocab.json"]

    @classmethod
    def load(cls, folder: Path) -> "BM25":
        with np.load(folder / "lexical.npz", allow_pickle=False) as arrays:
            matrix = sparse.csr_matrix(
                (arrays["data"], arrays["indices"], arrays["indptr"]), shape=tuple(arrays["shape"])
            )
            idf = arrays["idf"]
        terms = json.loads((folder / "lexical_vocab.json").read_text(encoding="utf-8"))
        return cls({t: i for i, t in enumerate(terms)}, matrix, idf)
