"""Hybrid passage retrieval: dense (MiniLM + FAISS) and lexical (BM25) candidates, fused by score.

The two fail on different questions (dense misses rare names and numbers, BM25 misses paraphrases), so each
proposes candidates, every candidate gets both scores, and the fused score adds BM25, scaled by the best
BM25 score of the query, to the cosine similarity.
"""

from __future__ import annotations

import numpy as np

from .lexical import top_rows
from .records import Hit
from .settings import AnswerSettings
from .store import Store

LEXICAL_WEIGHT = 0.3


def retrieve(store: Store, query: str, query_vector: np.ndarray, settings: AnswerSettings,
             boost: dict[int, float] | None = None) -> list[Hit]:
    """The best passages for `query`, best first. `boost` adds to the fused score of given rows (used to
    keep a follow-up question near the passages the conversation was just about)."""
    k = settings.candidates
    candidates: set[int] = set()
    lexical_scores = store.lexical.scores(query) if settings.mode != "dense" else None
    if settings.mode != "lexical":
        candidates.update(row for row, _ in store.search_dense(query_vector, k))
    if lexical_scores is not None:
        candidates.update(int(r) for r in top_rows(lexical_scores, k))
    candidates.update(boost or ())
    if not candidates:
        return []
    rows = np.fromiter(candidates, dtype=np.int64)
    dense = store.chunk_vectors[rows] @ query_vector.astype(np.float32)
    lexical = lexical_scores[rows] if lexical_scores is not None else np.zeros(len(rows), np.float32)
    top_lexical = float(lexical.max()) if len(lexical) else 0.0
    lexical_norm = lexical / top_lexical if top_lexical > 0 else lexical
    if settings.mode == "dense":
        fused = dense
    elif settings.mode == "lexical":
        fused = lexical_norm
    else:
        fused = dense + LEXICAL_WEIGHT * lexical_norm
    if boost:
        fused = fused + np.array([boost.get(int(r), 0.0) for r in rows], dtype=np.float32)
    order = np.argsort(-fused, kind="stable")
    return [Hit(int(rows[i]), float(dense[i]), float(lexical[i]), float(fused[i])) for i in order]
