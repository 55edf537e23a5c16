"""Example questions for a first visit, each offered only when Verbatim answers it with the quote it promises.

A corpus can name its examples: `.about/examples.jsonl` in the corpus folder (hidden folders are not
indexed), one `{"question": "Who chaired the meeting?", "answer": "Anwar"}` a line, where `answer` is what the
first quote must contain. Any other folder of documents gets questions made from its own section headings
("What does the document say about regional and international issues?"), each offered only when its first
quote comes from that section.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .qa import QA
from .store import Store

EXAMPLES_FILE = Path(".about") / "examples.jsonl"
MAX_WORDS = 7  # a heading-made example should read at a glance
MAX_CHARS = 60
_NUMBERING = re.compile(r"^\s*(?:\(?(?:\d+|[ivxlc]+|[a-z])[.)]|\d+(?:\.\d+)*)\s+", re.I)  # "1.", "(2)", "iii.", "a)"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    question: str
    answer: str | None = None  # words the first quote must contain
    section: str | None = None  # or the heading the first quote must come from


def named_examples(corpus: Path) -> list[Example]:
    """The corpus's own examples file, if it has one; a malformed line is logged and left out."""
    path = corpus / EXAMPLES_FILE
    if not path.is_file():
        return []
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            found.append(Example(str(row["question"]), str(row["answer"])))
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is not {\"question\", \"answer\"}; left out", path, number)
    return found


def topics(store: Store) -> list[str]:
    """Distinct section headings without their numbering ("1. ASEAN-Japan cooperation" -> "ASEAN-Japan
    cooperation"), taking each document's next heading in turn."""
    headings: dict[str, list[str]] = {}
    for chunk in store.chunks:
        leaf = _NUMBERING.sub("", (chunk.section or "").split(" > ")[-1]).strip(" .:;")
        if leaf and leaf not in headings.setdefault(chunk.doc, []):
            headings[chunk.doc].append(leaf)
    ordered = [doc_headings[i] for i in range(max(map(len, headings.values()), default=0))
               for doc_headings in headings.values() if i < len(doc_headings)]
    seen: set[str] = set()
    out = []
    for topic in ordered:
        key = topic.casefold()
        if key not in seen and 2 <= len(topic.split()) <= MAX_WORDS and len(topic) <= MAX_CHARS:
            seen.add(key)
            out.append(topic)
    return out


def question_about(topic: str, documents: int) -> str:
    """ "EXPANDING MARITIME COOPERATION" -> "What does the document say about expanding maritime cooperation?"
    Sentence case loses its first capital; Title Case and names stay as written."""
    words = topic.split()
    if topic.isupper():
        topic = topic.lower()
    elif words[0][1:].islower() and not any(w[:1].isupper() for w in words[1:]):
        topic = topic[0].lower() + topic[1:]
    return f"What {'does the document' if documents == 1 else 'do the documents'} say about {topic}?"


def keeps_promise(qa: QA, example: Example) -> bool:
    """Answered (not abstained), with the first quote containing the promised words or from the section."""
    answer = qa.ask(example.question)
    if answer.abstained or not answer.citations:
        return False
    first = answer.citations[0]
    if example.answer is not None:
        return _fold(example.answer) in _fold(first.quote)
    return example.section is not None and example.section.casefold() in (first.section or "").casefold()


def example_questions(qa: QA, limit: int = 4, tries: int = 8) -> list[str]:
    """Up to `limit` questions that get the answer they promise (trying at most `tries` made from headings)."""
    store = qa.store()
    candidates = named_examples(qa.settings.corpus) or [
        Example(question_about(topic, len(store.manifest["files"])), section=topic) for topic in topics(store)[:tries]]
    found = []
    for example in candidates:
        if keeps_promise(qa, example):
            found.append(example.question)
            if len(found) == limit:
                break
    return found


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())
