"""Asking a question set through `QA.ask`, timed, with every citation checked against its document; and the
simpler configurations of the same code that `--compare` sets the full system against."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from app.documents import Unreadable, load_document
from app.qa import QA
from app.records import Answer
from app.settings import ChunkingSettings, Settings

from .metrics import Result
from .questions import Question

PROGRESS_FROM = 50  # questions: shorter runs finish before a bar would help


class VerbatimCheck:
    """Counts an answer's citations whose quote is exactly `text[start:end]` of the document as the loader
    reads it: the contract's definition, checked here independently of QA's own check."""

    def __init__(self, corpus: Path, max_bytes: int) -> None:
        self.corpus = corpus
        self.max_bytes = max_bytes
        self._texts: dict[str, str | None] = {}

    def text(self, doc: str) -> str | None:
        if doc not in self._texts:
            try:
                self._texts[doc] = load_document(self.corpus / doc, self.corpus, self.max_bytes).text
            except Unreadable:
                self._texts[doc] = None
        return self._texts[doc]

    def count(self, answer: Answer) -> int:
        total = 0
        for c in answer.citations:
            text = self.text(c.doc)
            total += bool(c.quote) and text is not None and text[c.start:c.end] == c.quote
        return total


def ask_all(qa: QA, questions: Sequence[Question], label: str = "questions",
            after: Callable[[Question], None] | None = None) -> list[Result]:
    """Every question through `qa.ask`, in order; a progress bar on stderr for long runs. `after`, if given,
    runs after each question (and after the warm-up one), outside its timing: the trade-off table times the
    floor there, interleaved so both see the same machine load."""
    if not questions:
        return []
    check = VerbatimCheck(qa.settings.corpus, int(qa.settings.max_file_mb * 1e6))
    qa.ask(questions[0].question, questions[0].history)  # loads the model and index: not a question's latency
    if after is not None:
        after(questions[0])
    results: list[Result] = []
    bar = tqdm(questions, desc=label, unit="q", file=sys.stderr, disable=len(questions) < PROGRESS_FROM,
               mininterval=2.0, dynamic_ncols=True)
    for question in bar:
        started = time.perf_counter()
        answer = qa.ask(question.question, question.history)
        latency_ms = (time.perf_counter() - started) * 1000
        results.append(Result(question, answer, latency_ms, check.count(answer)))
        if after is not None:
            after(question)
    return results


@dataclass(frozen=True)
class Configuration:
    name: str
    settings: Settings


def configurations(base: Settings) -> list[Configuration]:
    """The full system and its simpler baselines: one retriever alone, and fixed 1,000-character chunks
    quoted whole (the tutorial pipeline; it needs its own index, built beside the main one)."""
    fixed_index = base.index.resolve().with_name(base.index.resolve().name + "-fixed1000")
    fixed = replace(base, index=fixed_index, chunking=ChunkingSettings(fixed_chars=1000))
    return [
        Configuration("full system", base),
        Configuration("no reader (fitted sentence scorer)", base.with_answer(reader=False)),
        Configuration("dense only", base.with_answer(mode="dense")),
        Configuration("lexical only", base.with_answer(mode="lexical")),
        Configuration("fixed 1,000-char chunks, whole", fixed.with_answer(whole_passages=True)),
    ]
