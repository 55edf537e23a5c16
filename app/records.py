"""The small frozen records passed between pipeline stages.

Offsets are always character offsets into `Document.text`, the text exactly as the loader reads it, so a
quote can be checked (`text[start:end] == quote`) anywhere between loading and display.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """One corpus file as text. `pages` holds (start, end) spans per PDF page, empty for other formats."""

    path: str  # relative to the corpus folder, "/"-separated
    title: str
    text: str
    sha256: str  # of the file's bytes
    pages: tuple[tuple[int, int], ...] = ()

    def page_at(self, offset: int) -> int | None:
        """1-based page holding `offset`, or None for documents without pages."""
        for number, (start, end) in enumerate(self.pages, start=1):
            if start <= offset < end:
                return number
        return None


@dataclass(frozen=True)
class Skipped:
    """A corpus file that was not indexed, and why (one line a person can act on)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A passage: paragraphs or list items that belong together, with its sentences' offsets."""

    doc: str
    start: int
    end: int
    text: str  # == document text[start:end]
    section: str | None  # heading path, " > "-joined
    page: int | None
    sentences: tuple[tuple[int, int], ...]  # absolute (start, end) offsets, inside [start, end)

    def text_at(self, start: int, end: int) -> str:
        """The document's text[start:end], for absolute offsets inside this passage."""
        return self.text[start - self.start:end - self.start]

    def sentence(self, index: int) -> str:
        return self.text_at(*self.sentences[index])


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with the signals that ranked it."""

    row: int
    dense: float  # cosine similarity
    lexical: float  # BM25 score
    fused: float  # rank-fusion score, the ranking key


@dataclass(frozen=True)
class Citation:
    id: int
    quote: str
    doc: str
    title: str
    section: str | None
    start: int
    end: int
    score: float
    page: int | None = None
    context: str = ""  # the surrounding passage, for display
    context_start: int = 0
    answer: tuple[int, int] | None = None  # the exact answer inside the quote, document offsets

    def to_json(self) -> dict:
        out = {
            "id": self.id,
            "quote": self.quote,
            "doc": self.doc,
            "title": self.title,
            "section": self.section,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }
        if self.page is not None:
            out["page"] = self.page
        if self.answer is not None:
            out["answer"] = {"start": self.answer[0], "end": self.answer[1]}
        return out


@dataclass(frozen=True)
class Answer:
    question: str
    abstained: bool
    answer: str
    citations: tuple[Citation, ...] = ()
    confidence: float = 0.0
    notice: str | None = None  # e.g. "question was truncated"
    query: str = ""  # what was searched after follow-up rewriting
    reader: str | None = None  # the readers that chose the quotes ("sentence + passage"); None: the fitted scorer

    def to_json(self) -> dict:
        return {
            "question": self.question,
            "abstained": self.abstained,
            "answer": self.answer,
            "citations": [c.to_json() for c in self.citations],
            "reader": self.reader or "sentence-scorer",
            **({"notice": self.notice} if self.notice else {}),
        }
