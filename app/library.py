"""A whole indexed document, for reading a quote in its place: only documents the current index holds, read
as the loader reads them, so the citation's offsets apply to the text shown.
"""

from __future__ import annotations

from .errors import VerbatimError
from .qa import QA
from .records import Document


class DocumentUnavailable(VerbatimError):
    """The document is not in the index, or changed since the index was built (its offsets no longer apply)."""


def indexed_document(qa: QA, path: str) -> Document:
    """The document at `path` (relative to the corpus) as indexed; `DocumentUnavailable` otherwise."""
    info = qa.store().manifest["files"].get(path)
    if info is None:
        raise DocumentUnavailable(f"{path!r} is not in the index")
    document = qa.documents.get(path, info["sha256"])
    if document is None:
        raise DocumentUnavailable(f"{path} changed or vanished since the index was built; press “Rebuild index”")
    return document


def span(document: Document, start: int | None, end: int | None) -> tuple[int, int] | None:
    """(start, end) when both lie inside the document in order, else None (the page shows it unmarked)."""
    if start is None or end is None or not 0 <= start <= end <= len(document.text):
        return None
    return start, end
