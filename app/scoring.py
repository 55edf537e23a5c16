"""Two small linear models, fitted on the dev splits by `python -m eval.fit` and stored in scoring.json:

- the sentence scorer: how likely a sentence of a retrieved passage answers the question, from its
  similarity to the question alone and with its neighbours, its soft word overlap with the question
  (`token_match`), its passage's similarity, and whether it holds the kind of answer asked for (a figure
  for "how many"). Passages are ranked by retrieval; within them the sentence's own fit decides (richer
  passage and lexical features did worse on held-out dev folds);
- the confidence model: how likely the best sentence answers at all, from the best sentence's score, the
  margin to the runner-up, the best passage, whether the question names things the corpus never
  mentions, and whether it asks for a number the best sentence does not give. Verbatim abstains below a
  threshold on this probability.

Features are generic (no corpus topics), so the same weights serve any folder of documents.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .lexical import tokens
from .records import Hit
from .settings import AnswerSettings
from .store import Store

WordVectors = Callable[[Sequence[str]], list[np.ndarray]]  # an embedder's `word_vectors`
WEIGHTS_FILE = Path(__file__).with_name("scoring.json")
SENTENCE_FEATURES = ("sentence_cosine", "token_match", "window_cosine", "passage_dense", "answer_type")
CONFIDENCE_FEATURES = ("best_score", "margin", "best_dense", "best_coverage", "unknown_names", "known_weight",
                       "number_missing")
READER_FEATURES = ("scorer", "reader_logit")  # how the reader's verdict and the scorer's combine into the ranking
READER_CONFIDENCE_FEATURES = CONFIDENCE_FEATURES + ("reader_logit", "start_certainty")

# A question that asks for a quantity or a date is not answered by a sentence without one: "How much funding
# did X commit?" finds X's sentence, but if it gives no figure the documents don't say. A year is a date,
# not a quantity: "How many attended in 2024?" is not answered by "In 2024, the Center hosted ...".
_WANTS_QUANTITY = re.compile(
    r"\b(how (many|much|long|often|old|large|big|far)|what (percent|percentage|amount|number|proportion|size))\b", re.I)
_WANTS_DATE = re.compile(r"\b(what|which) (year|date|day|month|time)\b", re.I)
# "Who chaired it?" is answered by a sentence that names someone: in English text, a capitalised word after
# the sentence's first, or an agent ("funded by a consortium"); "The overview of the meeting is as
# follows." names no one.
_WANTS_NAME = re.compile(r"^\W*(who|whom|whose)\b", re.I)
_NAME = re.compile(r"\b[A-Z][\w'’.-]*")
_AGENT = re.compile(r"\bby (a|an|the|its|their|his|her)\b", re.I)
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
                 r"hundreds?|thousands?|millions?|billions?|trillions?|dozens?|several|half|double|twice|triple")
_MONTHS = r"january|february|march|april|may|june|july|august|september|october|november|december"
_QUANTITY = re.compile(rf"\d+(?:[.,]\d+)*(?!\d)|\b({_NUMBER_WORDS})\b", re.I)
_DATE = re.compile(rf"\d+|\b({_MONTHS})\b", re.I)


def _figures_not_given(pattern: re.Pattern, question: str, sentence: str) -> list[str]:
    """The sentence's matches of `pattern` that the question does not itself contain."""
    given = {m.group(0).lower() for m in pattern.finditer(question)}
    return [m.group(0) for m in pattern.finditer(sentence) if m.group(0).lower() not in given]


def answers_the_type(question: str, sentence: str) -> bool:
    """False when the question asks for a quantity (or a date, or someone) that the sentence does not contain.
    A figure the question itself gives is not its answer: "How many leaders attended the 28th summit?" is not
    answered by a sentence whose only figure is that 28th."""
    if _WANTS_QUANTITY.search(question):
        return any(not re.fullmatch(r"(1[89]|20)\d\d", f) for f in _figures_not_given(_QUANTITY, question, sentence))
    if _WANTS_DATE.search(question):
        return bool(_figures_not_given(_DATE, question, sentence))
    if _WANTS_NAME.search(question):
        return bool(_AGENT.search(sentence)) or any(m.start() > 0 for m in _NAME.finditer(sentence.lstrip(" \"'“(")))
    return True


@dataclass(frozen=True)
class Candidate:
    score: float  # the ranking key: the sentence scorer's logit, combined with the reader's once it has read
    sentence_row: int
    hit: Hit
    index: int  # which sentence of the passage
    probability: float | None = None  # the reader's probability that this sentence answers
    span: tuple[int, int] | None = None  # the readers' exact answer, document offsets inside the sentence
    prior: float | None = None  # the sentence scorer's logit, before the readers moved the ranking
    start_certainty: float = 0.0  # the reader's (reader.Reading); 0 for a sentence it did not read
    passage_best: tuple[int, tuple[int, int]] | None = None  # where the passage reader's best answer in this
    # sentence's passage lies: (which sentence, document offsets); None where it did not read the passage


@lru_cache(maxsize=1)
def weights() -> dict:
    return json.loads(WEIGHTS_FILE.read_text(encoding="utf-8"))


def reader_fit(reader: str) -> dict:
    """What eval.fit chose on dev for this reader: how its logit combines with the scorer's, the confidence
    model over both, and the threshold; {} when it has not been fitted (the reader's own verdict then decides)."""
    fitted = weights().get("reader", {})
    return fitted if fitted.get("name") == reader else {}


def passage_weight(settings: AnswerSettings, passage_reader: str) -> float:
    """How much the passage reader's span score adds to a sentence's ranking: the configured
    `passage_weight`, else the one eval.fit chose on dev for this passage reader; 0 (it does not read) when
    neither is given."""
    if settings.passage_weight is not None:
        return float(settings.passage_weight)
    fitted = weights().get("passage_reader", {})
    return float(fitted.get("weight", 0.0)) if fitted.get("name") == passage_reader else 0.0


def combined_score(scorer: float, reader_logit: float, reader: str) -> float:
    """The ranking key of a sentence the reader read: fitted on dev, else the reader's logit alone."""
    model = reader_fit(reader).get("combine")
    if not model:
        return reader_logit
    return float(np.dot(model["weights"], (scorer, reader_logit)) + model["bias"])


def abstain_threshold(settings: AnswerSettings, reader: str | None = None) -> float:
    """The configured `abstain_below`, else the threshold chosen on the dev splits: for the reader's
    probability when `reader` (its name) decides, else for the fitted confidence model."""
    if settings.abstain_below is not None:
        return float(settings.abstain_below)
    if reader is not None:
        return float(reader_fit(reader).get("abstain_below", 0.5))
    return float(weights()["abstain_below"])


def unrelated_rule(settings: AnswerSettings, reader: str | None = None) -> dict | None:
    """How far unrelated questions may raise the threshold on a corpus (`app.calibration`), as fitted on dev
    for the reader's confidence; None with a configured `abstain_below`, which is applied as given."""
    if settings.abstain_below is not None or reader is None:
        return None
    return reader_fit(reader).get("unrelated")


def _coverage(words: set[str], query_weights: dict[str, float], total: float) -> float:
    return sum(w for t, w in query_weights.items() if t in words) / total


def sentence_features(store: Store, hits: list[Hit], question: str, query_vector: np.ndarray,
                      question_words: np.ndarray, word_vectors: WordVectors) -> tuple[np.ndarray, list[tuple[Hit, int, int]]]:
    """One feature row per sentence of `hits` (in SENTENCE_FEATURES order) and where each sentence is."""
    where = [(hit, i, rows.start + i) for hit in hits for rows in [store.sentence_rows(hit.row)] for i in range(len(rows))]
    if not where:
        return np.zeros((0, len(SENTENCE_FEATURES)), np.float32), []
    texts = [store.chunks[hit.row].sentence(i) for hit, i, _ in where]
    vectors = store.sentence_vectors[[row for _, _, row in where]].astype(np.float32)
    cosine = vectors @ query_vector
    window = vectors.copy()  # each sentence with half of each neighbour in its passage
    for k, (_, i, _) in enumerate(where):  # a passage's sentences are consecutive in `where`, from index 0
        has_next = k + 1 < len(where) and where[k + 1][1] == i + 1
        window[k] += 0.5 * (vectors[k - 1] if i > 0 else 0) + 0.5 * (vectors[k + 1] if has_next else 0)
    window_cosine = window @ query_vector / np.maximum(np.linalg.norm(window, axis=1), 1e-9)
    matched = token_match(question_words, word_vectors(texts))
    passage_dense = np.array([hit.dense for hit, _, _ in where], np.float32)
    answer_type = np.array([answers_the_type(question, text) for text in texts], np.float32)
    return np.column_stack([cosine, matched, window_cosine, passage_dense, answer_type]).astype(np.float32), where


def token_match(question_words: np.ndarray, texts_words: list[np.ndarray]) -> np.ndarray:
    """Per text: the mean, over the question's content words, of the best cosine to any of the text's words.
    A soft word overlap: 1.0 when every question word occurs, high when near forms or synonyms do."""
    out = np.zeros(len(texts_words), np.float32)
    filled = [k for k, words in enumerate(texts_words) if len(words)]
    if not len(question_words) or not filled:
        return out
    sims = question_words @ np.vstack([texts_words[k] for k in filled]).T
    starts = np.cumsum([0] + [len(texts_words[k]) for k in filled[:-1]])
    out[filled] = np.maximum.reduceat(sims, starts, axis=1).mean(axis=0)
    return out


def score_sentences(store: Store, hits: list[Hit], question: str, query_vector: np.ndarray,
                    question_words: np.ndarray, word_vectors: WordVectors) -> list[Candidate]:
    """Every sentence of `hits`, scored by the fitted sentence model, best first."""
    features, where = sentence_features(store, hits, question, query_vector, question_words, word_vectors)
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
                        query_terms: list[str], follow_up: bool, read: bool = False) -> np.ndarray:
    """CONFIDENCE_FEATURES of the best candidate; with `read`, the sentence reader's logit and start certainty
    for it too."""
    if not candidates:
        return np.zeros(len(READER_CONFIDENCE_FEATURES if read else CONFIDENCE_FEATURES), np.float32)
    best = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else best.score - 1.0
    idfs = store.lexical.idf_of(query_terms)
    known = sum(w for t, w in zip(query_terms, idfs) if t in store.lexical.vocab) / (sum(idfs) or 1.0)
    chunk = store.chunks[best.hit.row]
    query_weights = dict(zip(query_terms, idfs))
    coverage = _coverage(set(tokens(chunk.text)), query_weights, sum(idfs) or 1.0)
    unknown = 0 if follow_up else min(len(unknown_names(store, question)), 3)
    number_missing = not answers_the_type(question, store.chunks[best.hit.row].sentence(best.index))
    values = [best.score, best.score - runner_up, best.hit.dense, coverage, unknown, known, number_missing]
    if read:
        values += [logit(best.probability), best.start_certainty]
    return np.asarray(values, np.float32)


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def confidence(features: np.ndarray, reader: str | None = None) -> float:
    """Probability that the best quote answers the question: the fitted confidence model (with the reader's
    logit as a feature when a reader read); for a reader not yet fitted, the reader's own probability."""
    if reader is not None:
        model = reader_fit(reader).get("confidence")
        if not model:
            return 1.0 / (1.0 + math.exp(-float(features[READER_CONFIDENCE_FEATURES.index("reader_logit")])))
    else:
        model = weights()["confidence"]
    z = float(features @ np.asarray(model["weights"], np.float32) + model["bias"])
    return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))
