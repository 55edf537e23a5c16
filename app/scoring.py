"""Two small linear models, fitted on the dev splits by `python -m eval.fit` and stored in scoring.json:

- the sentence scorer: how likely a sentence of a retrieved passage answers the question, from its
  similarity to the question, how much of the question's weight (IDF) it and its neighbours cover, its
  passage's dense/lexical scores and rank, answer-type agreement (a "how many" question wants a number);
- the confidence model: how likely the best sentence answers at all, from the best sentence's score, the
  margin to the runner-up, the best passage, and whether the question names things the corpus never
  mentions. Verbatim abstains below a threshold on this probability.

Features are generic (no corpus topics), so the same weights serve any folder of documents.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .lexical import tokens
from .records import Hit
from .settings import AnswerSettings
from .store import Store

WEIGHTS_FILE = Path(__file__).with_name("scoring.json")
SENTENCE_FEATURES = ("sentence_cosine", "coverage", "neighbour_coverage", "passage_coverage", "passage_dense",
                     "passage_lexical", "passage_rank", "number_match", "length")
CONFIDENCE_FEATURES = ("best_score", "margin", "best_dense", "best_coverage", "unknown_names", "known_weight")

_NUMBER_QUESTION = re.compile(
    r"\b(how (many|much|long|often|old|large|big|far)|what (percent|percentage|year|date|amount|number|proportion)|"
    r"when|which year|what time)\b", re.I)
_HAS_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|first|second|third|annual|century|year|month|week|day|january|february|march|"
    r"april|may|june|july|august|september|october|november|december)\b", re.I)


@dataclass(frozen=True)
class Candidate:
    score: float
    sentence_row: int
    hit: Hit
    index: int  # which sentence of the passage


@lru_cache(maxsize=1)
def weights() -> dict:
    return json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))


def abstain_threshold(settings: AnswerSettings) -> float:
    """The configured `abstain_below`, else the threshold fitted on the dev splits with these weights."""
    return float(settings.abstain_below if settings.abstain_below is not None else weights()["abstain_below"])


def _coverage(words: set[str], query_weights: dict[str, float], total: float) -> float:
    return sum(w for t, w in query_weights.items() if t in words) / total


def sentence_features(store: Store, hits: list[Hit], question: str, query_vector: np.ndarray,
                      query_terms: list[str]) -> tuple[np.ndarray, list[tuple[Hit, int, int]]]:
    """One feature row per sentence of `hits` (in SENTENCE_FEATURES order) and where each sentence is."""
    if not hits:
        return np.zeros((0, len(SENTENCE_FEATURES)), np.float32), []
    query_weights = dict(zip(query_terms, store.lexical.idf_of(query_terms)))
    total = sum(query_weights.values()) or 1.0
    wants_number = bool(_NUMBER_QUESTION.search(question))
    top_lexical = max(h.lexical for h in hits) or 1.0
    rows: list[list[float]] = []
    where: list[tuple[Hit, int, int]] = []
    for rank, hit in enumerate(hits):
        sentence_rows = store.sentence_rows(hit.row)
        if not len(sentence_rows):
            continue
        chunk = store.chunks[hit.row]
        sims = store.sentence_vectors[sentence_rows.start:sentence_rows.stop].astype(np.float32) @ query_vector
        texts = [chunk.text[s - chunk.start:e - chunk.start] for s, e in chunk.sentences]
        words = [set(tokens(t)) for t in texts]
        coverages = [_coverage(w, query_weights, total) for w in words]
        passage_coverage = _coverage(set().union(*words), query_weights, total)
        for i, text in enumerate(texts):
            neighbours = max(coverages[i - 1] if i else 0.0, coverages[i + 1] if i + 1 < len(texts) else 0.0)
            number = (1.0 if _HAS_NUMBER.search(text) else -1.0) if wants_number else 0.0
            rows.append([float(sims[i]), coverages[i], neighbours, passage_coverage, hit.dense,
                         hit.lexical / top_lexical, 1.0 / (1 + rank), number, math.log(max(len(text), 10)) / 6])
            where.append((hit, i, sentence_rows.start + i))
    return np.asarray(rows, dtype=np.float32), where


def score_sentences(store: Store, hits: list[Hit], question: str, query_vector: np.ndarray,
                    query_terms: list[str]) -> list[Candidate]:
    """Every sentence of `hits`, scored by the fitted sentence model, best first."""
    features, where = sentence_features(store, hits, question, query_vector, query_terms)
    if not where:
        return []
    model = weights()["sentence"]
    logits = features @ np.asarray(model["weights"], np.float32) + model["bias"]
    order = np.argsort(-logits, kind="stable")
    return [Candidate(float(logits[i]), where[i][2], where[i][0], where[i][1]) for i in order]


def unknown_names(store: Store, question: str) -> list[str]:
    """Names and numbers in the question that occur nowhere in the corpus (e.g. another country's leader)."""
    words = re.findall(r"[\w][\w'’.-]*", question)
    unknown = []
    for i, word in enumerate(words):
        core = word.strip(".'’-")
        is_name = (core[:1].isupper() and i > 0) or any(ch.isdigit() for ch in core)
        terms = tokens(core)
        if is_name and terms and all(t not in store.lexical.vocab for t in terms):
            unknown.append(core)
    return unknown


def confidence_features(store: Store, candidates: list[Candidate], question: str,
                        query_terms: list[str], follow_up: bool) -> np.ndarray:
    if not candidates:
        return np.zeros(len(CONFIDENCE_FEATURES), np.float32)
    best = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else best.score - 1.0
    idfs = store.lexical.idf_of(query_terms)
    known = sum(w for t, w in zip(query_terms, idfs) if t in store.lexical.vocab) / (sum(idfs) or 1.0)
    chunk = store.chunks[best.hit.row]
    query_weights = dict(zip(query_terms, idfs))
    coverage = _coverage(set(tokens(chunk.text)), query_weights, sum(idfs) or 1.0)
    unknown = 0 if follow_up else min(len(unknown_names(store, question)), 3)
    return np.asarray([best.score, best.score - runner_up, best.hit.dense, coverage, unknown, known], np.float32)


def confidence(features: np.ndarray) -> float:
    """Probability that the best quote answers the question (the fitted confidence model)."""
    model = weights()["confidence"]
    z = float(features @ np.asarray(model["weights"], np.float32) + model["bias"])
    return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))
