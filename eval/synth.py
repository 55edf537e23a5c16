"""Deterministic synthetic corpora for the scale benchmark: real sentences recombined, names and numbers varied.

Sentences come from the project's real corpora (the seed corpus and eval/datasets/*/corpus), so passages
have the length, vocabulary and sentence structure of real documents, which is what embedding and BM25
cost depends on. Each synthetic document draws its paragraphs from one source document (topical, like a
real paper), replaces some capitalised words by other capitalised words of the pool and every number by
another of the same length. The same seed gives byte-identical files.

Every paragraph is one line of 450-850 characters under its own `## heading` or next to one other paragraph,
so the chunker makes one passage per paragraph: `write_corpus(folder, n)` yields n passages, give or take a
rare paragraph the chunker reads differently (99,998 for 100,000).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from app.chunking import split_sentences
from app.documents import load_corpus

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "corpus", *sorted((ROOT / "eval" / "datasets").glob("*/corpus")))
PARAGRAPH_CHARS = (450, 850)  # two never fit in one 900-character passage; none is cut
PARAGRAPHS_PER_DOC = (8, 40)
HEADINGS = (
    "Background", "Summary", "Methods", "Results", "Discussion", "Findings", "Context", "Cooperation",
    "Outcomes", "Implementation", "Funding", "Partners", "Next steps", "Analysis", "Observations", "Scope",
)
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]{3,}\b")  # a capitalised word inside a sentence
_NUMBER = re.compile(r"\d+")


@dataclass(frozen=True)
class SentencePool:
    """Real sentences grouped by source document, and the capitalised words that vary names."""

    groups: tuple[tuple[str, ...], ...]
    names: tuple[str, ...]

    @property
    def sentences(self) -> int:
        return sum(len(g) for g in self.groups)


def load_pool(sources=SOURCES) -> SentencePool:
    """Sentences of 40-400 characters from every readable file of the source folders (sorted, so stable)."""
    groups: list[tuple[str, ...]] = []
    names: set[str] = set()
    for folder in sources:
        if not Path(folder).is_dir():
            continue
        docs, _ = load_corpus(Path(folder), 20_000_000)
        for doc in docs:
            spans = split_sentences(doc.text)
            sentences = tuple(s for s in (" ".join(doc.text[a:b].split()) for a, b in spans) if 40 <= len(s) <= 400)
            if len(sentences) >= 5 and sum(map(len, sentences)) >= 2000:
                groups.append(sentences)
                for sentence in sentences:
                    names.update(_NAME.findall(sentence))
    if not groups:
        raise FileNotFoundError(f"no source sentences found under {', '.join(map(str, sources))}")
    return SentencePool(tuple(groups), tuple(sorted(names)))


class Generator:
    def __init__(self, pool: SentencePool, seed: int = 0) -> None:
        self.pool = pool
        self.rng = random.Random(seed)

    def vary(self, sentence: str) -> str:
        """Half the names swapped for other names of the pool, every number for another of its length."""
        rng = self.rng
        sentence = _NAME.sub(lambda m: rng.choice(self.pool.names) if rng.random() < 0.5 else m.group(), sentence)
        return _NUMBER.sub(lambda m: str(rng.randint(10 ** (len(m.group()) - 1), 10 ** len(m.group()) - 1))
                           if len(m.group()) > 1 else str(rng.randint(0, 9)), sentence)

    def paragraph(self, group: tuple[str, ...]) -> str:
        """Consecutive sentences of one source from a random start, 450-850 characters."""
        low, high = PARAGRAPH_CHARS
        while True:
            at = self.rng.randrange(len(group))
            parts: list[str] = []
            size = 0
            while at < len(group) and size < low:
                sentence = self.vary(group[at])
                if size + len(sentence) + 1 > high:
                    break
                parts.append(sentence)
                size += len(sentence) + 1
                at += 1
            if size >= low:
                return " ".join(parts)

    def document(self, paragraphs: int) -> tuple[str, str]:
        """(title, Markdown text) of a document with `paragraphs` paragraphs in sections of one or two."""
        group = self.rng.choice(self.pool.groups)
        title = self.vary(group[0])[:90].rstrip(" ,;:.")
        lines = [f"# {title}", ""]
        written = 0
        while written < paragraphs:
            lines += [f"## {written // 2 + 1}. {self.rng.choice(HEADINGS)}", ""]
            for _ in range(min(self.rng.choice((1, 2)), paragraphs - written)):
                lines += [self.paragraph(group), ""]
                written += 1
        return title, "\n".join(lines)


def write_corpus(folder: Path, passages: int, seed: int = 0, pool: SentencePool | None = None) -> list[Path]:
    """Write Markdown documents of `passages` paragraphs in total into `folder` (created); deterministic."""
    generator = Generator(pool or load_pool(), seed)
    folder = Path(folder)
    written: list[Path] = []
    remaining = passages
    while remaining > 0:
        count = min(remaining, generator.rng.randint(*PARAGRAPHS_PER_DOC))
        _, text = generator.document(count)
        sub = folder / f"part{len(written) // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"doc{len(written):06d}.md"
        path.write_text(text, encoding="utf-8")
        written.append(path)
        remaining -= count
    return written


def passage_texts(passages: int, seed: int = 0, pool: SentencePool | None = None) -> list[str]:
    """`passages` paragraph texts without files: for the retrieval-only benchmarks (BM25 at a million)."""
    generator = Generator(pool or load_pool(), seed)
    out: list[str] = []
    while len(out) < passages:
        group = generator.rng.choice(generator.pool.groups)
        out.extend(generator.paragraph(group) for _ in range(min(20, passages - len(out))))
    return out
