"""Incremental rebuild: compare the corpus with the current build by content hash and embed only what changed.

Unchanged files reuse their passages and vectors; changed and added files are chunked and embedded; removed
files drop out. A change of model, chunking settings or index format re-embeds everything. The new build is
written to a private folder and published atomically, so a failed or interrupted build leaves the previous
index serving.

The build is three steps that the Ray engine (app/ray_build.py) shares: `compare` decides what changed,
something produces each document's `Part` (here: chunked on this machine, embedded into the new build's
memory-mapped vector files in batches), and `publish` writes and swaps in the build.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import acronyms
from .chunking import chunk_document
from .documents import load_corpus
from .embedding import Embedder
from .errors import CorpusError, VerbatimError
from .lexical import BM25
from .records import Chunk, Skipped
from .settings import APP_VERSION, FORMAT_VERSION, Settings
from .store import (IndexDir, Store, check_manifest, load_store, open_vectors, read_manifest, verify_artifacts,
                    write_build)

LOCK_WAIT_SECONDS = 120.0
EMBED_BATCH = 8192  # texts per embed() call: large enough for sentence-transformers' length sorting to pay


@dataclass(frozen=True)
class BuildReport:
    added: int
    changed: int
    removed: int
    unchanged: int
    skipped: int
    chunks: int
    embedded_chunks: int
    seconds: float
    skipped_files: tuple[Skipped, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (path, what happened: added/changed/unchanged/removed)
    rebuilt: bool = True  # False when nothing had changed and the current build was kept
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, in order
    engine: str = "local"
    workers: int = 1  # processes that embedded

    def to_json(self) -> dict:
        """The contract's counts, plus what happened to every file, the stages' times and the workers."""
        out = {k: getattr(self, k) for k in
               ("added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded_chunks")}
        out["seconds"] = round(self.seconds, 3)
        out["files"] = [{"path": p, "status": s} for p, s in self.files] + [
            {"path": s.path, "status": "skipped", "reason": s.reason} for s in self.skipped_files
        ]
        out.update(engine=self.engine, workers=self.workers, stages={k: round(v, 3) for k, v in self.stages.items()})
        return out


@dataclass(frozen=True)
class Part:
    """One document's share of a build, in corpus order: its passages and where their vectors come from
    (the previous build's rows, vectors computed elsewhere, or neither: embed them here)."""

    path: str
    sha256: str
    title: str
    pages: int | None
    acronyms: dict[str, str]
    chunks: Sequence[Chunk]
    reused: range | None = None  # its passage rows in the previous build
    vectors: tuple[np.ndarray, np.ndarray] | None = None  # (passage, sentence) vectors

    @property
    def sentences(self) -> int:
        return sum(len(c.sentences) for c in self.chunks)


def embedding_text(chunk: Chunk, title: str) -> str:
    """What a passage is embedded (and lexically indexed) as: its heading context, then its text."""
    context = " > ".join(part for part in (title, chunk.section) if part)
    return f"{context}\n{chunk.text}"


def part_texts(part: Part) -> list[str]:
    """What embedding a part means: each passage's embedding text, then its sentences."""
    texts: list[str] = []
    for chunk in part.chunks:
        texts.append(embedding_text(chunk, part.title))
        texts.extend(chunk.sentence(i) for i in range(len(chunk.sentences)))
    return texts


@dataclass
class Plan:
    """What changed since the reusable build: per-file statuses, their counts, and that build."""

    manifest: dict | None
    statuses: list[tuple[str, str]]
    counts: dict[str, int]

    def __post_init__(self) -> None:
        self._by_path = dict(self.statuses)

    def status(self, path: str) -> str:
        return self._by_path[path]

    def unchanged_since(self, skipped: list[Skipped]) -> bool:
        return bool(self.manifest) and not (self.counts["added"] or self.counts["changed"] or self.counts["removed"]) \
            and self.manifest.get("skipped", []) == [asdict(s) for s in skipped]


def compare(manifest: dict | None, hashes: Sequence[tuple[str, str]]) -> Plan:
    """Statuses of the readable files (path, sha256 of their bytes) against the reusable build's manifest."""
    old_files = manifest["files"] if manifest else {}
    statuses = [(path, "unchanged" if old_files.get(path, {}).get("sha256") == sha else
                 "changed" if path in old_files else "added") for path, sha in hashes]
    current = {path for path, _ in hashes}
    statuses += [(p, "removed") for p in sorted(old_files) if p not in current]
    counts = {s: sum(1 for _, st in statuses if st == s) for s in ("added", "changed", "removed", "unchanged")}
    return Plan(manifest, statuses, counts)


def kept_report(plan: Plan, skipped: list[Skipped], started: float, **extra) -> BuildReport:
    """The report of a build that found nothing to do."""
    return BuildReport(**plan.counts, skipped=len(skipped), chunks=plan.manifest["counts"]["chunks"],
                       embedded_chunks=0, seconds=time.perf_counter() - started, skipped_files=tuple(skipped),
                       files=tuple(plan.statuses), rebuilt=False, **extra)


def no_documents(settings: Settings, skipped: list[Skipped]) -> CorpusError:
    reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
    return CorpusError(f"no readable documents in {settings.corpus}" + (f" ({reasons})" if reasons else ""))


def check_corpus(settings: Settings) -> None:
    if not settings.corpus.is_dir():
        raise CorpusError(f"corpus folder {settings.corpus} does not exist; create it and put documents in it")


def build(settings: Settings, embedder: Embedder, full: bool = False) -> BuildReport:
    """Bring the index up to date with the corpus on this machine; see the module docstring."""
    started = time.perf_counter()
    check_corpus(settings)
    index_dir = IndexDir(settings.index)
    stages: dict[str, float] = {}
    with index_dir.lock(LOCK_WAIT_SECONDS):
        clock = time.perf_counter()
        docs, skipped = load_corpus(settings.corpus, int(settings.max_file_mb * 1e6))
        manifest = None if full else _reusable_manifest(settings, embedder, index_dir)
        plan = compare(manifest, [(d.path, d.sha256) for d in docs])
        stages["read"] = time.perf_counter() - clock
        if plan.unchanged_since(skipped):
            return kept_report(plan, skipped, started, stages=stages)
        if not docs:
            raise no_documents(settings, skipped)
        clock = time.perf_counter()
        previous = previous_build(settings, embedder, plan)
        parts = []
        for doc in docs:
            reused = previous_part(previous, doc.path) if plan.status(doc.path) == "unchanged" else None
            parts.append(reused or Part(doc.path, doc.sha256, doc.title, len(doc.pages) or None,
                                        acronyms.find_definitions(doc.text), chunk_document(doc, settings.chunking)))
        stages["chunk"] = time.perf_counter() - clock
        chunks, embedded = publish(settings, embedder, index_dir, parts, previous, skipped, stages,
                                   lambda fresh, out: _embed_into(embedder, fresh, out))
    return BuildReport(**plan.counts, skipped=len(skipped), chunks=chunks, embedded_chunks=embedded,
                       seconds=time.perf_counter() - started, skipped_files=tuple(skipped),
                       files=tuple(plan.statuses), stages=stages)


def publish(settings: Settings, embedder: Embedder, index_dir: IndexDir, parts: Sequence[Part],
            previous: "Previous | None", skipped: list[Skipped], stages: dict[str, float],
            embed: Callable[[list[tuple[Part, int, int]], tuple[np.ndarray, np.ndarray]], None] | None = None,
            ) -> tuple[int, int]:
    """Write a build of `parts` into a private folder and swap it in; returns (passages, passages embedded).
    Each part's vectors are copied from the previous build or from `part.vectors`; the rest are handed to
    `embed(fresh, (passage_out, sentence_out))` as (part, first passage row, first sentence row)."""
    rows, sentence_rows = [0], [0]
    for part in parts:
        rows.append(rows[-1] + len(part.chunks))
        sentence_rows.append(sentence_rows[-1] + part.sentences)
    private = index_dir.new_build_folder()
    try:
        clock = time.perf_counter()
        out = open_vectors(private, rows[-1], sentence_rows[-1], embedder.dimension)
        fresh = []
        for part, row, sentence_row in zip(parts, rows, sentence_rows):
            if part.reused is not None:
                first, last = previous.store.sentence_start[part.reused.start], previous.store.sentence_start[part.reused.stop]
                out[0][row:row + len(part.chunks)] = previous.store.chunk_vectors[part.reused.start:part.reused.stop]
                out[1][sentence_row:sentence_row + part.sentences] = previous.store.sentence_vectors[first:last]
            elif part.vectors is not None:
                out[0][row:row + len(part.chunks)] = part.vectors[0]
                out[1][sentence_row:sentence_row + part.sentences] = part.vectors[1]
            else:
                fresh.append((part, row, sentence_row))
        if fresh:
            embed(fresh, out)
        for array in out:
            array.flush()
        del out
        stages["embed" if fresh else "vectors"] = time.perf_counter() - clock
        clock = time.perf_counter()
        lexical = BM25.fit(embedding_text(c, part.title) for part in parts for c in part.chunks)
        stages["lexical"] = time.perf_counter() - clock
        clock = time.perf_counter()
        merged: dict[str, str] = {}
        for part in parts:  # the first definition in corpus order wins
            for acronym, long_form in part.acronyms.items():
                merged.setdefault(acronym, long_form)
        manifest = {
            "format_version": FORMAT_VERSION,
            "app_version": APP_VERSION,
            "model": {"id": embedder.model_id, "dimension": embedder.dimension, "normalized": True},
            "chunking": settings.chunking.to_json(),
            "files": {p.path: {"sha256": p.sha256, "title": p.title, "chunks": len(p.chunks), "pages": p.pages,
                               "acronyms": p.acronyms} for p in parts},
            "skipped": [asdict(s) for s in skipped],
            "counts": {"documents": len(parts), "chunks": rows[-1], "sentences": sentence_rows[-1]},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_build(private, manifest, (c for part in parts for c in part.chunks), lexical, merged,
                    settings.exact_search_limit)
        stages["write"] = time.perf_counter() - clock
        clock = time.perf_counter()
        index_dir.publish(private)
        stages["publish"] = time.perf_counter() - clock
    except BaseException:
        shutil.rmtree(private, ignore_errors=True)
        raise
    return rows[-1], sum(len(part.chunks) for part in parts if part.reused is None)


def _embed_into(embedder: Embedder, fresh: list[tuple[Part, int, int]], out: tuple[np.ndarray, np.ndarray]) -> None:
    """Embed the fresh parts' passages and sentences in batches, straight into the build's vector files."""
    texts: list[str] = []
    targets: list[tuple[int, int]] = []  # (0: passage / 1: sentence, row)
    for part, row, sentence_row in fresh:
        for chunk in part.chunks:
            texts.append(embedding_text(chunk, part.title))
            targets.append((0, row))
            row += 1
            for i in range(len(chunk.sentences)):
                texts.append(chunk.sentence(i))
                targets.append((1, sentence_row))
                sentence_row += 1
        if len(texts) >= EMBED_BATCH:
            _scatter(embedder.embed(texts), targets, out)
            texts, targets = [], []
    if texts:
        _scatter(embedder.embed(texts), targets, out)


def _scatter(vectors: np.ndarray, targets: list[tuple[int, int]], out: tuple[np.ndarray, np.ndarray]) -> None:
    kind = np.fromiter((k for k, _ in targets), np.int8, len(targets))
    rows = np.fromiter((r for _, r in targets), np.int64, len(targets))
    for which in (0, 1):
        mask = kind == which
        out[which][rows[mask]] = vectors[mask]


@dataclass(frozen=True)
class Previous:
    """The build being replaced, loaded, and each of its documents' passage rows."""

    store: Store
    rows: dict[str, range]


def previous_build(settings: Settings, embedder: Embedder, plan: Plan) -> Previous | None:
    """The reusable build when some files are unchanged; its rows per document follow the manifest's files
    (written in row order)."""
    if not plan.counts["unchanged"]:
        return None
    try:
        store = load_store(settings.index, embedder.model_id, embedder.dimension)
    except VerbatimError:
        return None  # damaged files: everything is embedded again
    rows, start = {}, 0
    for path, info in store.manifest["files"].items():
        rows[path] = range(start, start + info["chunks"])
        start += info["chunks"]
    return Previous(store, rows) if start == len(store.chunks) else None


def previous_part(previous: Previous | None, path: str) -> Part | None:
    """An unchanged document's part, reusing the previous build's passages and vectors."""
    if previous is None or path not in previous.rows:
        return None
    info = previous.store.manifest["files"][path]
    rows = previous.rows[path]
    return Part(path, info["sha256"], info["title"], info["pages"], info.get("acronyms", {}),
                previous.store.chunks[rows.start:rows.stop], reused=rows)


def _reusable_manifest(settings: Settings, embedder: Embedder, index_dir: IndexDir) -> dict | None:
    """The current build's manifest if its vectors can be reused (same format, model, chunking), else None."""
    folder = index_dir.current()
    if folder is None:
        return None
    try:
        manifest = read_manifest(folder)
        check_manifest(manifest, embedder.model_id, embedder.dimension)
        verify_artifacts(folder, manifest)
    except VerbatimError:
        return None  # from another model or format, or damaged: rebuild everything
    return manifest if manifest.get("chunking") == settings.chunking.to_json() else None
