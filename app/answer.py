"""Quote selection: the sentence that answers, scored in its passage's context, cited exactly — or an honest
abstention with the nearest passages offered as related.

Sentences are scored by the fitted sentence model (scoring.py). When the readers ship (reader.py), the
passage reader reads the passages of the best of them and retrieval's best passage whole and marks the
answer in each of their sentences, which moves a sentence that answers in its passage's context up the
ranking; the sentence reader then reads the best of that ranking against the question, and its verdict
weighs in as much as eval.fit found it should (scoring.combined_score). The best sentence becomes the
answer, joined with a neighbour when it cannot stand alone (it opens with a pronoun pointing back, or it
introduces a list with a colon) or when that neighbour is the runner-up, rated nearly as likely (two halves of
one statement read as one quote, not as [1] and [2]); up to three more quotes that add something follow.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from .lexical import tokens
from .reader import PassageReaderLike, PassageReading, Reader, Reading, read_many
from .records import Answer, Citation, Hit
from .scoring import Candidate, combined_score, logit
from .settings import AnswerSettings
from .store import Store

SUPPORT_MARGIN = 0.5  # supporting quotes score within this many logits of the best one: at least ~60% as likely
MAX_JOINED_CHARS = 420  # a quote of two sentences stays a quote, not a wall of text
NEAR_DUPLICATE = 0.6
_BACK_REFERENCE = re.compile(
    r"^(it|its|this|that|these|those|they|their|them|he|she|his|her|such|there|the latter|the former|both|"
    r"additionally|also|moreover|furthermore|in addition|however)\b", re.I)


def _introduces(text: str) -> bool:
    """Whether a sentence (or quote) ends with a colon: it introduces what follows ("... as follows:", a run-in
    label such as "Space Cooperation:") and says nothing without it."""
    return text.rstrip(" *_").endswith(":")


def quote_span(store: Store, cand: Candidate, join_back: bool = True) -> tuple[int, int]:
    """The sentence, or two adjacent ones when the sentence cannot stand alone: one that ends with a colon (it
    introduces a list, or it is a run-in label such as "Space Cooperation:") takes the next; with `join_back`,
    one that points back or is very short takes the one before."""
    chunk = store.chunks[cand.hit.row]
    sentences = chunk.sentences
    start, end = sentences[cand.index]
    text = chunk.sentence(cand.index)
    if _introduces(text) and cand.index + 1 < len(sentences):
        end = sentences[cand.index + 1][1]
    elif join_back and cand.index > 0 and (_BACK_REFERENCE.match(text) or len(text) < 50):
        prev_text = chunk.sentence(cand.index - 1)
        if len(prev_text) + len(text) < MAX_JOINED_CHARS or _introduces(prev_text):
            start = sentences[cand.index - 1][0]
    return start, end


def read_ranked(reader: Reader, questions: Sequence[str], store: Store, ranked: Sequence[list[Candidate]],
                settings: AnswerSettings) -> list[list[Candidate]]:
    """Each question's ranked sentences with the best `reader_candidates` read by the sentence reader (all
    questions in one batch: a question may come twice, with two rankings, and a sentence in both is read
    once), then `reader_more` more read for the questions where none of those reached `reader_sure` (a second
    batch): a sentence ranked third is read only when the first two look wrong. Each list ordered by
    `apply_readings`."""
    count, more = settings.reader_candidates, settings.reader_more
    known: dict = {}
    readings = read_many(reader, questions, [to_read(store, c, count) for c in ranked], known)
    unsure = [i for i, (c, r) in enumerate(zip(ranked, readings))
              if more and len(c) > count and max((x.probability for x in r), default=0.0) < settings.reader_sure]
    extra = read_many(reader, [questions[i] for i in unsure], [to_read(store, ranked[i][count:], more) for i in unsure],
                      known)
    for i, found in zip(unsure, extra):
        readings[i] = readings[i] + found
    return [apply_readings(reader.name, store, c, len(r), r) for c, r in zip(ranked, readings)]


def passage_ranked(reader: PassageReaderLike, questions: Sequence[str], store: Store,
                   ranked: Sequence[list[Candidate]], settings: AnswerSettings, weight: float) -> list[list[Candidate]]:
    """Each question's scorer-ranked sentences reordered by the passage reader (`mark_passages`), the
    passages of its best `passage_reads` sentences and retrieval's best read for all questions in one batch."""
    readings = read_passages(reader, questions, store, ranked, settings.passage_reads)
    return [mark_passages(store, c, r, weight) for c, r in zip(ranked, readings)]


def passages_to_read(candidates: list[Candidate], count: int) -> list[int]:
    """The passages of the scorer's `count` best sentences, and retrieval's best passage: the scorer judges
    each sentence alone, so every sentence of the passage that answers may rank below others (dev, SQuAD 2.0:
    hit@1 83.5 -> 88.2%)."""
    best = max((c.hit for c in candidates), key=lambda hit: hit.fused, default=None)
    return list(dict.fromkeys([c.hit.row for c in candidates[:count]] + ([best.row] if best else [])))


def read_passages(reader: PassageReaderLike, questions: Sequence[str], store: Store,
                  ranked: Sequence[list[Candidate]], count: int) -> list[dict[int, PassageReading]]:
    """Per question, its `passages_to_read` read whole (all questions in one batch), by passage row."""
    rows = [passages_to_read(candidates, count) for candidates in ranked]
    chunks = [store.chunks[row] for found in rows for row in found]
    readings = reader.read_passages([q for q, found in zip(questions, rows) for _ in found], [c.text for c in chunks],
                                    [[(s - c.start, e - c.start) for s, e in c.sentences] for c in chunks])
    out, at = [], 0
    for found in rows:
        out.append(dict(zip(found, readings[at:at + len(found)])))
        at += len(found)
    return out


def mark_passages(store: Store, candidates: list[Candidate], readings: dict[int, PassageReading],
                  weight: float) -> list[Candidate]:
    """The candidates reordered by scorer logit + `weight` x the passage reader's score of the best answer span
    inside each (scores compare across passages), that span kept as the candidate's exact answer, and where
    in its passage the reader's best answer lies. A sentence of an unread passage (or past the reader's token
    limit) scores as if its span were the weakest read: it stays below the read ones its scorer logit does not
    lift above them."""
    marks = {(row, i): (score, span) for row, reading in readings.items()
             for i, (score, span) in enumerate(zip(reading.scores, reading.spans)) if span is not None}
    weakest = min((score for score, _ in marks.values()), default=0.0)
    bests = {row: max(((s, i, span) for i, (s, span) in enumerate(zip(r.scores, r.spans)) if span is not None),
                      default=None) for row, r in readings.items()}
    out = []
    for cand in candidates:
        score, span = marks.get((cand.hit.row, cand.index), (weakest, None))
        start = store.chunks[cand.hit.row].start
        best = bests.get(cand.hit.row)
        out.append(replace(cand, score=cand.score + weight * score, prior=cand.score,
                           span=(start + span[0], start + span[1]) if span else None,
                           passage_best=(best[1], (start + best[2][0], start + best[2][1])) if best else None))
    return sorted(out, key=lambda c: -c.score)


def to_read(store: Store, candidates: list[Candidate], count: int) -> list[str]:
    """The texts of the scorer's best `count` sentences: what the reader reads."""
    return [store.chunks[c.hit.row].sentence(c.index) for c in candidates[:count]]


def apply_readings(reader: str, store: Store, candidates: list[Candidate], count: int,
                   readings: list[Reading]) -> list[Candidate]:
    """The `count` read sentences ordered by the reader's verdict combined with the scorer's
    (scoring.combined_score), each with the reader's probability and its answer span (the passage reader's,
    where it marked one: it read the sentence in context); then the rest, unread, in the scorer's order,
    scored as if the reader rated them as low as the weakest one it read (so they stay below every read one
    and still compete as supporting quotes)."""
    chosen = candidates[:count]
    logits = [logit(r.probability) for r in readings]
    read = []
    for cand, reading, verdict in zip(chosen, readings, logits):
        start = store.chunks[cand.hit.row].sentences[cand.index][0]
        span = cand.span or ((start + reading.span[0], start + reading.span[1]) if reading.span else None)
        score = combined_score(cand.score, verdict, reader)
        read.append(replace(cand, score=score, probability=reading.probability, span=span, prior=_scorer_logit(cand),
                            start_certainty=reading.start_certainty))
    weakest = min(logits, default=0.0)
    unread = [replace(c, score=combined_score(c.score, weakest, reader), prior=_scorer_logit(c))
              for c in candidates[count:]]
    return sorted(read, key=lambda c: -c.score) + unread


def _near_duplicate(a: str, b: str) -> bool:
    ta, tb = set(tokens(a)), set(tokens(b))
    if not ta or not tb:
        return a.strip() == b.strip()
    return len(ta & tb) / len(ta | tb) > NEAR_DUPLICATE


def make_citation(store: Store, number: int, hit: Hit, start: int, end: int, score: float,
                  answer: tuple[int, int] | None = None) -> Citation:
    chunk = store.chunks[hit.row]
    quote = chunk.text_at(start, end)
    inside = answer is not None and start <= answer[0] < answer[1] <= end
    return Citation(
        id=number, quote=quote, doc=chunk.doc, title=store.manifest["files"][chunk.doc]["title"],
        section=chunk.section, start=start, end=end, score=score, page=chunk.page,
        context=chunk.text, context_start=chunk.start, answer=answer if inside else None,
    )


def _scorer_logit(cand: Candidate) -> float:
    """The sentence scorer's own logit: `score` itself where no reader combined its verdict in."""
    return cand.score if cand.prior is None else cand.prior


def _supports(cand: Candidate, first: Candidate, best_prior: float) -> bool:
    """A supporting quote is one the reader or the scorer rates nearly as likely as its own best: within
    SUPPORT_MARGIN of the first on the combined scale, or of the scorer's best on the scorer's own. The scorer's
    scale matters because the reader reads only the first few and gives the unread ones its weakest verdict:
    once it rejects the runner-up, the combined scores of every later sentence fall together."""
    return cand.score >= first.score - SUPPORT_MARGIN or _scorer_logit(cand) >= best_prior - SUPPORT_MARGIN


def first_quote_span(store: Store, candidates: list[Candidate],
                     best_prior: float) -> tuple[int, int, tuple[int, int] | None]:
    """The best sentence's quote (`quote_span`) and its exact answer, joined with a neighbour the answer often
    runs into: the runner-up when it is the sentence just before or after and it `_supports` the best ("...
    built a small settlement on the harbour." "Some sources suggest they named it Ziz."), or the neighbour
    where the passage reader found its best answer in the passage, which it then marks (the best sentence
    restates the question, the next answers it: "... P is seen as a mathematical abstraction ..." "This
    hypothesis is called the Cobham-Edmonds thesis.")."""
    best = candidates[0]
    start, end = quote_span(store, best)
    answer = best.span
    sentences = store.chunks[best.hit.row].sentences

    def joined(neighbour: int) -> tuple[int, int] | None:
        """The quote with that sentence of the passage added, while it stays a quote."""
        s, e = sentences[neighbour]
        return (min(start, s), max(end, e)) if max(end, e) - min(start, s) < MAX_JOINED_CHARS else None

    runner_up = candidates[1] if len(candidates) > 1 else None
    if (runner_up is not None and runner_up.hit.row == best.hit.row and abs(runner_up.index - best.index) == 1
            and _supports(runner_up, best, best_prior) and (span := joined(runner_up.index))):
        start, end = span
    if best.passage_best is not None and abs(best.passage_best[0] - best.index) == 1 and (
            span := joined(best.passage_best[0])):
        (start, end), answer = span, best.passage_best[1]
    return start, end, answer


def select_quotes(store: Store, candidates: list[Candidate], settings: AnswerSettings) -> list[Citation]:
    """The best quote first (`first_quote_span`), then up to three supporting quotes that add something (no
    near-duplicates, nothing the first already quotes, no "... as follows:" without what follows), in the
    reader's order, each one that `_supports` the first."""
    citations: list[Citation] = []
    taken: list[tuple[str, int, int]] = []
    best_prior = max(map(_scorer_logit, candidates), default=0.0)
    for cand in candidates:
        if len(citations) >= settings.max_quotes:
            break
        if citations and not _supports(cand, candidates[0], best_prior):
            continue
        chunk = store.chunks[cand.hit.row]
        if citations:
            start, end = quote_span(store, cand, join_back=False)  # a label or "as follows:" takes its sentence
            answer = cand.span if (cand.probability or 0.0) >= 0.5 else None  # the sentence reader says it answers
        else:
            start, end, answer = first_quote_span(store, candidates, best_prior)
        quote = chunk.text_at(start, end)
        if citations and _introduces(quote):
            continue  # it introduces what its passage does not hold: alone, it supports nothing
        if any(doc == chunk.doc and s < end and start < e for doc, s, e in taken):
            continue
        if any(_near_duplicate(quote, c.quote) for c in citations):
            continue
        taken.append((chunk.doc, start, end))
        citations.append(make_citation(store, len(citations) + 1, cand.hit, start, end, cand.score, answer))
    return citations


def whole_passages(store: Store, hits: list[Hit], settings: AnswerSettings) -> list[Citation]:
    """Baseline: quote the best passages whole, as the common tutorial pipeline returns chunks."""
    return [make_citation(store, i + 1, hit, store.chunks[hit.row].start, store.chunks[hit.row].end, hit.fused)
            for i, hit in enumerate(hits[: settings.max_quotes])]


def fold(text: str) -> str:
    return " ".join(text.split())


def compose(question: str, citations: list[Citation], abstained: bool, conf: float, query: str,
            notice: str | None = None, reader: str | None = None) -> Answer:
    """The answer text shown to a person: the quotes marked [1] [2], or a plain abstention."""
    citations = [replace(c, id=i) for i, c in enumerate(citations, start=1)]
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
    return Answer(question, abstained, text, tuple(citations), conf, notice, query, reader)
