"""Example questions for a first visit, drawn from the loaded index itself: section headings first (spread
across documents), then document titles. Any folder of documents gets its own examples, and an example is
only offered when Verbatim answers it rather than abstaining.
"""

from __future__ import annotations

from .qa import QA
from .store import Store

MAX_WORDS = 7  # an example should read at a glance
MAX_CHARS = 60


def topics(store: Store) -> list[str]:
    """Distinct headings, taking each document's next heading in turn, then the titles of the documents."""
    headings: dict[str, list[str]] = {}
    for chunk in store.chunks:
        leaf = (chunk.section or "").split(" > ")[-1].strip()
        if leaf:
            headings.setdefault(chunk.doc, [])
            if leaf not in headings[chunk.doc]:
                headings[chunk.doc].append(leaf)
    ordered = [doc_headings[i] for i in range(max(map(len, headings.values()), default=0))
               for doc_headings in headings.values() if i < len(doc_headings)]
    ordered += [_without_label(title) for _, title in sorted(store.titles.items())]
    seen: set[str] = set()
    out = []
    for topic in ordered:
        key = topic.casefold()
        if key not in seen and 2 <= len(topic.split()) <= MAX_WORDS and len(topic) <= MAX_CHARS:
            seen.add(key)
            out.append(topic)
    return out


def question_about(topic: str) -> str:
    """ "EXPANDING MARITIME COOPERATION" -> "What do the documents say about expanding maritime cooperation?" """
    words = topic.split()
    if topic.isupper():
        topic = topic.lower()
    elif words[0][1:].islower() and not any(w[:1].isupper() for w in words[1:]):
        topic = topic[0].lower() + topic[1:]  # sentence case; Title Case and names stay as written
    return f"What do the documents say about {topic.rstrip(' .:;?')}?"


def example_questions(qa: QA, limit: int = 4, tries: int = 8) -> list[str]:
    """Up to `limit` questions about the corpus that get a quoted answer (trying at most `tries`)."""
    found = []
    for topic in topics(qa.store())[:tries]:
        question = question_about(topic)
        if not qa.ask(question).abstained:
            found.append(question)
            if len(found) == limit:
                break
    return found


def _without_label(title: str) -> str:
    """ "Fact Sheet: New Initiatives to ..." -> "New Initiatives to ..." when what follows can stand alone."""
    label, sep, rest = title.partition(": ")
    return rest.strip() if sep and len(rest.split()) >= 3 and len(label.split()) <= 3 else title.strip()
