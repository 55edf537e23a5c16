"""Quote selection: the sentence that answers, scored in its passage's context, cited exactly — or an honest
abstention with the nearest passages offered as related.

Each sentence of the best passages is scored from its own similarity to the question, how much of the
question's weight (IDF) its words cover, and its passage's score. The best sentence becomes the answer,
joined with a neighbour when it cannot stand alone (it opens with a pronoun pointing back, or it introduces
a list with a colon). Confidence is the best score, lowered when the question names things (proper nouns,
numbers) that the corpus never mentions; below a threshold chosen on dev splits, Verbatim abstains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .lexical import tokens
from .records import Answer, Citation, Hit
from .settings import AnswerSettings
from .store import Store

W_SENTENCE, W_COVERAGE, W_PASSAGE = 0.45, 0.30, 0.25
TYPE_BONUS = 0.05  # a "how many / when" question and a sentence with a number in it
UNKNOWN_NAME_PENALTY = 0.12  # per question name or number the corpus never mentions
SUPPORT_MARGIN = 0.10
NEAR_DUPLICATE = 0.6
_BACK_REFERENCE = re.compile(
    r"^(it|its|this|that|these|those|they|their|them|he|she|his|her|such|there|the latter|the former|both|"
    r"additionally|also|moreover|furthermore|in addition|however)\b", re.I)
_NUMBER_QUESTION = re.compile(r"\b(how (many|much|long|often|old|large|big)|what (percent|percentage|year|date|amount|number)|"
                              r"when|which year|what time)\b", re.I)
_HAS_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|twenty|hundred|thousand|million|"
                         r"billion|first|second|third|annual|year|month|week|day|january|february|march|april|may|june|"
                         r"july|august|september|october|november|december)\b", re.I)


@dataclass(frozen=True)
class Candidate:
    score: float
    sentence_row: int
    hit: Hit
    index: int  # which sentence of the passage


def sentence_candidates(store: Store, hits: list[Hit], question: str, query_vector: np.ndarray,
                        settings: AnswerSettings, query_terms: list[str]) -> list[Candidate]:
    """Every sentence of the top passages with its score, best first."""
    top = hits[: settings.passages]
    if not top:
        return []
    weights = dict(zip(query_terms, store.lexical.idf_of(query_terms)))
    total = sum(weights.values()) or 1.0
    wants_number = bool(_NUMBER_QUESTION.search(question))
    best_fused = top[0].fused or 1.0
    out: list[Candidate] = []
    for hit in top:
        rows = store.sentence_rows(hit.row)
        if not len(rows):
            continue
        sims = store.sentence_vectors[rows.start:rows.stop].astype(np.float32) @ query_vector
        chunk = store.chunks[hit.row]
        passage = W_PASSAGE * (hit.dense + 0.5 * max(hit.fused / best_fused, 0.0)) / 1.5
        for i, (start, end) in enumerate(chunk.sentences):
            text = chunk.text[start - chunk.start:end - chunk.start]
            words = set(tokens(text))
            coverage = sum(w for t, w in weights.items() if t in words) / total
            score = W_SENTENCE * float(sims[i]) + W_COVERAGE * coverage + passage
            if wants_number:
                score += TYPE_BONUS if _HAS_NUMBER.search(text) else -TYPE_BONUS
            out.append(Candidate(score, rows.start + i, hit, i))
    out.sort(key=lambda c: -c.score)
    return out


def unknown_names(store: Store, question: str) -> list[str]:
    """Names and numbers in the question that occur nowhere in the corpus (e.g. another country's leader)."""
    words = re.findall(r"\b[\w][\w'’.-]*", question)
    unknown = []
    for i, word in enumerate(words):
        core = word.strip(".'’-")
        is_name = core[:1].isupper() and i > 0 and not core.isupper() or any(ch.isdigit() for ch in core)
        if is_name and core.lower() not in {"i"}:
            terms = tokens(core)
            if terms and all(t not in store.lexical.vocab for t in terms):
                unknown.append(core)
    return unknown


def confidence(best: Candidate | None, unknown: list[str]) -> float:
    if best is None:
        return 0.0
    return best.score - UNKNOWN_NAME_PENALTY * min(len(unknown), 3)


def quote_span(store: Store, cand: Candidate) -> tuple[int, int]:
    """The sentence, or two adjacent ones when the sentence cannot stand alone."""
    chunk = store.chunks[cand.hit.row]
    sentences = chunk.sentences
    start, end = sentences[cand.index]
    text = chunk.text[start - chunk.start:end - chunk.start]
    if text.rstrip().endswith(":") and cand.index + 1 < len(sentences):
        end = sentences[cand.index + 1][1]
    elif cand.index > 0 and (_BACK_REFERENCE.match(text) or len(text) < 50):
        prev_start, prev_end = sentences[cand.index - 1]
        prev_text = chunk.text[prev_start - chunk.start:prev_end - chunk.start]
        if len(prev_text) + len(text) < 420 or prev_text.rstrip().endswith(":"):
            start = prev_start
    return start, end


def _near_duplicate(a: str, b: str) -> bool:
    ta, tb = set(tokens(a)), set(tokens(b))
    if not ta or not tb:
        return a.strip() == b.strip()
    return len(ta & tb) / len(ta | tb) > NEAR_DUPLICATE


def make_citation(store: Store, number: int, hit: Hit, start: int, end: int, score: float) -> Citation:
    chunk = store.chunks[hit.row]
    quote = chunk.text[start - chunk.start:end - chunk.start]
    return Citation(
        id=number, quote=quote, doc=chunk.doc, title=store.manifest["files"][chunk.doc]["title"],
        section=chunk.section, start=start, end=end, score=score, page=chunk.page,
        context=chunk.text, context_start=chunk.start,
    )


def select_quotes(store: Store, candidates: list[Candidate], settings: AnswerSettings) -> list[Citation]:
    """The best quote first, then up to three supporting quotes that add something (no near-duplicates)."""
    citations: list[Citation] = []
    taken: list[tuple[str, int, int]] = []
    for cand in candidates:
        if len(citations) >= settings.max_quotes:
            break
        if citations and cand.score < candidates[0].score - SUPPORT_MARGIN:
            break
        chunk = store.chunks[cand.hit.row]
        start, end = quote_span(store, cand) if not citations else chunk.sentences[cand.index]
        quote = chunk.text[start - chunk.start:end - chunk.start]
        if any(doc == chunk.doc and s < end and start < e for doc, s, e in taken):
            continue
        if any(_near_duplicate(quote, c.quote) for c in citations):
            continue
        taken.append((chunk.doc, start, end))
        citations.append(make_citation(store, len(citations) + 1, cand.hit, start, end, cand.score))
    return citations


def whole_passages(store: Store, hits: list[Hit], settings: AnswerSettings) -> list[Citation]:
    """Baseline: quote the best passages whole, as the common tutorial pipeline returns chunks."""
    return [make_citation(store, i + 1, hit, store.chunks[hit.row].start, store.chunks[hit.row].end, hit.fused)
            for i, hit in enumerate(hits[: settings.max_quotes])]


def fold(text: str) -> str:
    return " ".join(text.split())


def compose(question: str, citations: list[Citation], abstained: bool, conf: float, query: str,
            notice: str | None = None) -> Answer:
    """The answer text shown to a person: the quotes marked [1] [2], or a plain abstention."""
    if abstained:
        lines = ["The documents don't say. I found nothing that answers this question."]
        if citations:
            lines.append("Related passages (not an answer):")
            lines += [f"[{c.id}] “{fold(c.quote)}”" for c in citations]
        text = "\n".join(lines)
    else:
        lines = [f"“{fold(citations[0].quote)}” [1]"]
        if len(citations) > 1:
            lines.append("Also in the documents:")
            lines += [f"“{fold(c.quote)}” [{c.id}]" for c in citations[1:]]
        text = "\n".join(lines)
    return Answer(question, abstained, text, tuple(citations), conf, notice, query)
