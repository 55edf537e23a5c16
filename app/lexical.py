"""BM25 as a sparse term-by-passage matrix: scoring a query is a sum of a few matrix rows, no Python loop
over passages, so it stays fast at a million passages. Saved as plain arrays (npz) and a JSON vocabulary.

Fitting streams: passages are tokenised in blocks and each block's term counts become numpy arrays at once,
so a million passages cost arrays of their nonzeros, not Python lists of them (which peaked at 3.5 GB).
"""

from __future__ import annotations

import itertools
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
FIT_BLOCK = 8192  # passages tokenised per block while fitting


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
        stems: dict[str, int | None] = {}  # word -> term id (None: a stopword), so each word is stemmed once
        rows, cols, counts, lengths = [], [], [], []
        texts = iter(texts)
        n_docs = 0
        while block := list(itertools.islice(texts, FIT_BLOCK)):
            ids: list[int] = []
            sizes: list[int] = []
            for text in block:
                before = len(ids)
                for word in _WORD.findall(text.lower()):
                    tid = stems.get(word, -1)
                    if tid == -1:
                        tid = stems[word] = (vocab.setdefault(stem(word), len(vocab))
                                             if word not in STOPWORDS and (len(word) > 1 or word.isdigit()) else None)
                    if tid is not None:
                        ids.append(tid)
                sizes.append(len(ids) - before)
            doc = np.repeat(np.arange(n_docs, n_docs + len(block), dtype=np.int64), sizes)
            keys, tf = np.unique(doc << 32 | np.asarray(ids, dtype=np.int64), return_counts=True)
            rows.append((keys & 0xFFFFFFFF).astype(np.int32))
            cols.append((keys >> 32).astype(np.int32))
            counts.append(tf.astype(np.float32))
            lengths.append(np.asarray(sizes, dtype=np.float32))
            n_docs += len(block)
        row, col, count = (np.concatenate(a) if a else np.zeros(0, t)
                           for a, t in ((rows, np.int32), (cols, np.int32), (counts, np.float32)))
        length = np.concatenate(lengths) if lengths else np.zeros(0, np.float32)
        df = np.bincount(row, minlength=len(vocab)).astype(np.float32)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        norm = k1 * (1 - b + b * length / max(float(length.mean()) if n_docs else 1.0, 1.0))
        data = count * (k1 + 1) / (count + norm[col]) * idf[row]
        matrix = sparse.csr_matrix((data.astype(np.float32), (row, col)), shape=(len(vocab), n_docs))
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
