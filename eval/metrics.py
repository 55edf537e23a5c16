"""Scores for a set of answered questions: quote accuracy, quote length, abstention, verbatim-ness and speed.

A hit is an answer whose first citation's quote contains a gold string (case-insensitive, whitespace folded);
an abstention on an answerable question is a miss. Abstention can be replayed at any threshold from the
answers' confidence (`declined(result, threshold)`): the quotes do not depend on the threshold, only the
abstained flag does, so one run prices every threshold.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from app.records import Answer

from .questions import Question

MAX_K = 4  # hit@k is reported for k = 1..MAX_K (the answer shows at most four quotes)


@dataclass(frozen=True)
class Result:
    """One question as asked: the answer, how long it took, and how many of its citations are verbatim."""

    question: Question
    answer: Answer
    latency_ms: float
    verbatim: int  # citations whose quote == the loaded document's text[start:end]

    def to_json(self) -> dict:
        """The results-file line: the answer JSON plus "id", "latency_ms" and "confidence"."""
        return {"id": self.question.id, **self.answer.to_json(), "latency_ms": round(self.latency_ms, 2),
                "confidence": round(self.answer.confidence, 4)}


def fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def contains_gold(quote: str, answers: Sequence[str]) -> bool:
    folded = fold(quote)
    return any(fold(gold) in folded for gold in answers)


def answer_words(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, no punctuation, no articles."""
    return [w for w in re.sub(r"[^\w\s]", " ", text.casefold()).split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, gold: str) -> float:
    """Word-overlap F1 of an answer span against one gold answer (SQuAD's measure)."""
    p, g = answer_words(prediction), answer_words(gold)
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_answer(result: Result) -> str | None:
    """The exact answer the first citation marks, if it marks one."""
    first = result.answer.citations[0] if result.answer.citations else None
    if first is None or first.answer is None:
        return None
    return first.quote[first.answer[0] - first.start:first.answer[1] - first.start]


def span_scores(result: Result) -> tuple[float, float]:
    """(exact match, token F1) of the marked answer against the best gold answer; 0 when nothing is marked."""
    span = exact_answer(result)
    if span is None:
        return 0.0, 0.0
    exact = max(float(answer_words(span) == answer_words(g)) for g in result.question.answers)
    return exact, max(token_f1(span, g) for g in result.question.answers)


def gold_rank(result: Result) -> int | None:
    """1-based position of the first citation that contains a gold string, or None."""
    for rank, citation in enumerate(result.answer.citations, start=1):
        if contains_gold(citation.quote, result.question.answers):
            return rank
    return None


def declined(result: Result, threshold: float | None = None) -> bool:
    """Did the system abstain? With a threshold: would it have, had `abstain_below` been `threshold`."""
    if threshold is None:
        return result.answer.abstained
    return not result.answer.citations or result.answer.confidence < threshold


def is_hit(result: Result, k: int = 1, threshold: float | None = None) -> bool:
    """An answered, answerable question with gold in one of its first k quotes."""
    if result.question.unanswerable or declined(result, threshold):
        return False
    rank = gold_rank(result)
    return rank is not None and rank <= k


@dataclass(frozen=True)
class Metrics:
    """Rates are fractions in [0, 1]; None where the set has nothing to measure them on."""

    questions: int
    answerable: int
    unanswerable: int
    conversations: int
    hit1: float | None
    hit3: float | None
    mrr: float | None
    hit_at_k: tuple[float, ...]  # k = 1..MAX_K, over answerable questions
    quote_chars_median: float | None  # first quote, answered answerable questions
    quote_chars_p90: float | None
    abstention_recall: float | None  # unanswerable questions declined
    false_abstention: float | None  # answerable questions declined
    followup_hit1: float | None  # answerable conversations, scored on the last turn
    span_exact: float | None  # the first quote's marked answer equals a gold answer (answered answerable)
    span_f1: float | None  # its token F1 against the best gold answer
    citations: int
    verbatim: float | None  # citations whose quote is exactly the document text at its offsets
    latency_p50_ms: float | None
    latency_p95_ms: float | None

    def to_json(self) -> dict:
        out = asdict(self)
        out["hit_at_k"] = list(self.hit_at_k)
        return out


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def score(results: Sequence[Result], threshold: float | None = None) -> Metrics:
    """Every metric over `results`; `threshold` replays abstention at another `abstain_below`."""
    answerable = [r for r in results if not r.question.unanswerable]
    unanswerable = [r for r in results if r.question.unanswerable]
    conversations = [r for r in answerable if r.question.is_conversation]
    ranks = [None if declined(r, threshold) else gold_rank(r) for r in answerable]
    answered = [r for r in answerable if not declined(r, threshold)]
    lengths = [len(r.answer.citations[0].quote) for r in answered]
    citations = sum(len(r.answer.citations) for r in results)
    latencies = [r.latency_ms for r in results]
    return Metrics(
        questions=len(results),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        conversations=sum(1 for r in results if r.question.is_conversation),
        hit1=_rate([is_hit(r, 1, threshold) for r in answerable]),
        hit3=_rate([is_hit(r, 3, threshold) for r in answerable]),
        mrr=sum(1 / rank for rank in ranks if rank) / len(ranks) if ranks else None,
        hit_at_k=tuple(sum(is_hit(r, k, threshold) for r in answerable) / len(answerable)
                       for k in range(1, MAX_K + 1)) if answerable else (),
        quote_chars_median=_percentile(lengths, 50),
        quote_chars_p90=_percentile(lengths, 90),
        abstention_recall=_rate([declined(r, threshold) for r in unanswerable]),
        false_abstention=_rate([declined(r, threshold) for r in answerable]),
        followup_hit1=_rate([is_hit(r, 1, threshold) for r in conversations]),
        span_exact=_mean([span_scores(r)[0] for r in answered]),
        span_f1=_mean([span_scores(r)[1] for r in answered]),
        citations=citations,
        verbatim=sum(r.verbatim for r in results) / citations if citations else None,
        latency_p50_ms=_percentile(latencies, 50),
        latency_p95_ms=_percentile(latencies, 95),
    )


def failures(results: Sequence[Result]) -> list[dict]:
    """Every question scored wrong, with what the system did instead: a wrong quote, an abstention on an
    answerable question, or an answer to an unanswerable one."""
    out = []
    for r in results:
        first = r.answer.citations[0].quote if r.answer.citations else None
        if r.question.unanswerable:
            if r.answer.abstained:
                continue
            outcome = "answered an unanswerable question"
        elif r.answer.abstained:
            outcome = "abstained" + (" (its first quote held the gold)" if gold_rank(r) == 1 else "")
        elif gold_rank(r) == 1:
            continue
        else:
            rank = gold_rank(r)
            outcome = "wrong first quote" + (f" (gold in quote {rank})" if rank else "")
        out.append({
            "id": r.question.id, "split": r.question.split, "kind": r.question.kind,
            "question": r.question.question, "history": list(r.question.history),
            "gold": list(r.question.answers), "outcome": outcome, "quote": first,
            "doc": r.answer.citations[0].doc if r.answer.citations else None,
            "confidence": round(r.answer.confidence, 4),
        })
    return out


# --- abstention trade-off --------------------------------------------------------------------------------

MAX_FALSE_ABSTENTION = 0.05


def objective(max_false_abstention: float = MAX_FALSE_ABSTENTION) -> str:
    return (f"the highest abstention recall with false abstention <= {max_false_abstention:.0%} on dev "
            "(ties: the lowest such threshold, which answers the most)")


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    answered_correctly: float | None  # hit@1 over answerable questions
    wrongly_declined: float | None  # answerable questions declined (false abstention)
    unanswerable_declined: float | None  # abstention recall
    declined_would_hit: float | None  # answerable declined although the first quote held the gold

    def to_json(self) -> dict:
        return asdict(self)


def thresholds(results: Sequence[Result], include: Sequence[float] = (), step: float = 0.01) -> list[float]:
    """A grid covering every confidence in `results` (and the values in `include`), from 'decline nothing'
    to 'decline everything'."""
    confidences = [r.answer.confidence for r in results if r.answer.citations] + list(include)
    if not confidences:
        return []
    low = math.floor(min(confidences) / step) * step
    high = math.ceil(max(confidences) / step) * step + step
    grid = {round(low + i * step, 4) for i in range(int(round((high - low) / step)) + 1)}
    return sorted(grid | {round(t, 4) for t in include})


def sweep(results: Sequence[Result], grid: Sequence[float]) -> list[SweepRow]:
    answerable = [r for r in results if not r.question.unanswerable]
    unanswerable = [r for r in results if r.question.unanswerable]
    return [SweepRow(
        threshold=t,
        answered_correctly=_rate([is_hit(r, 1, t) for r in answerable]),
        wrongly_declined=_rate([declined(r, t) for r in answerable]),
        unanswerable_declined=_rate([declined(r, t) for r in unanswerable]),
        declined_would_hit=_rate([declined(r, t) and gold_rank(r) == 1 for r in answerable]),
    ) for t in grid]


def choose_threshold(rows: Sequence[SweepRow], max_false_abstention: float = MAX_FALSE_ABSTENTION) -> float | None:
    """The threshold that meets `objective(max_false_abstention)`, or None when the rows hold no
    unanswerable questions to decline."""
    allowed = [r for r in rows if r.unanswerable_declined is not None and r.wrongly_declined is not None
               and r.wrongly_declined <= max_false_abstention]
    if not allowed:
        return None
    best = max(r.unanswerable_declined for r in allowed)
    return min(r.threshold for r in allowed if r.unanswerable_declined == best)
