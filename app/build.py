"""Incremental rebuild: compare the corpus with the current build by content hash and embed only what changed.

Unchanged files reuse their passages and vectors; changed and added files are chunked and embedded; removed
files drop out. A change of model, chunking settings or index format re-embeds everything. The new build is
written to a private folder and published atomically, so a failed or interrupted build leaves the previous
index serving.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import acronyms
from .chunking import chunk_document
from .documents import load_corpus
from .embedding import Embedder
from .errors import CorpusError, VerbatimError
from .lexical import BM25
from .records import Chunk, Document, Skipped
from .settings import APP_VERSION, FORMAT_VERSION, Settings
from .store import IndexDir, Store, check_manifest, load_store, read_manifest, verify_artifacts, write_build

LOCK_WAIT_SECONDS = 120.0


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

    def to_json(self) -> dict:
        """The contract's counts, plus what happened to every file."""
        out = {k: getattr(self, k) for k in
               ("added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded_chunks")}
        out["seconds"] = round(self.seconds, 3)
        out["files"] = [{"path": p, "status": s} for p, s in self.files] + [
            {"path": s.path, "status": "skipped", "reason": s.reason} for s in self.skipped_files
        ]
        return out


def embedding_text(chunk: Chunk, title: str) -> str:
    """What a passage is embedded (and lexically indexed) as: its heading context, then its text."""
    context = " > ".join(part for part in (title, chunk.section) if part)
    return f"{context}\n{chunk.text}"


def chunking_key(settings: Settings, embedder: Embedder) -> dict:
    return {"format_version": FORMAT_VERSION, "model": embedder.model_id, "chunking": settings.chunking.to_json()}


def build(settings: Settings, embedder: Embedder, full: bool = False) -> BuildReport:
    """Bring the index up to date with the corpus; see the module docstring."""
    started = time.perf_counter()
    if not settings.corpus.is_dir():
        raise CorpusError(f"corpus folder {settings.corpus} does not exist; create it and put documents in it")
    index_dir = IndexDir(settings.index)
    with index_dir.lock(LOCK_WAIT_SECONDS):
        docs, skipped = load_corpus(settings.corpus, int(settings.max_file_mb * 1e6))
        manifest = None if full else _reusable_manifest(settings, embedder, index_dir)
        old_files = manifest["files"] if manifest else {}

        statuses: list[tuple[str, str]] = []
        for doc in docs:
            old = old_files.get(doc.path)
            status = "unchanged" if old and old["sha256"] == doc.sha256 else "changed" if old else "added"
            statuses.append((doc.path, status))
        current_paths = {d.path for d in docs}
        statuses += [(p, "removed") for p in sorted(old_files) if p not in current_paths]
        counts = {s: sum(1 for _, st in statuses if st == s) for s in ("added", "changed", "removed", "unchanged")}

        if manifest and not (counts["added"] or counts["changed"] or counts["removed"]) and \
                manifest.get("skipped", []) == [asdict(s) for s in skipped]:
            return BuildReport(**counts, skipped=len(skipped), chunks=manifest["counts"]["chunks"], embedded_chunks=0,
                               seconds=time.perf_counter() - started, skipped_files=tuple(skipped),
                               files=tuple(statuses), rebuilt=False)
        if not docs:
            reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:5])
            raise CorpusError(f"no readable documents in {settings.corpus}" + (f" ({reasons})" if reasons else ""))

        previous = _load_previous(settings, embedder) if counts["unchanged"] else None
        old_rows = _rows_by_doc(previous.chunks) if previous else {}
        plan = [(doc, None if status == "unchanged" and doc.path in old_rows else chunk_document(doc, settings.chunking))
                for doc, (_, status) in zip(docs, statuses)]
        chunks, chunk_vectors, sentence_vectors, embedded = _assemble(plan, previous, old_rows, embedder)
        titles = {d.path: d.title for d in docs}
        lexical = BM25.fit(embedding_text(c, titles[c.doc]) for c in chunks)
        new_manifest = {
            "format_version": FORMAT_VERSION,
            "app_version": APP_VERSION,
            "model": {"id": embedder.model_id, "dimension": embedder.dimension, "normalized": True},
            "chunking": settings.chunking.to_json(),
            "files": {
                d.path: {"sha256": d.sha256, "title": d.title, "chunks": sum(1 for c in chunks if c.doc == d.path),
                         "pages": len(d.pages) or None}
                for d in docs
            },
            "skipped": [asdict(s) for s in skipped],
            "counts": {"documents": len(docs), "chunks": len(chunks), "sentences": int(sentence_vectors.shape[0])},
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        private = index_dir.new_build_folder()
        try:
            write_build(private, new_manifest, chunks, chunk_vectors, sentence_vectors, lexical,
                        acronyms.learn(d.text for d in docs), settings.exact_search_limit)
            index_dir.publish(private)
        except BaseException:
            shutil.rmtree(private, ignore_errors=True)
            raise
    return BuildReport(**counts, skipped=len(skipped), chunks=len(chunks), embedded_chunks=embedded,
                       seconds=time.perf_counter() - started, skipped_files=tuple(skipped), files=tuple(statuses))


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


def _load_previous(settings: Settings, embedder: Embedder) -> Store | None:
    try:
        return load_store(settings.index, embedder.model_id, embedder.dimension)
    except VerbatimError:
        return None  # damaged files: everything is embedded again


def _rows_by_doc(chunks: list[Chunk]) -> dict[str, range]:
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(chunks):
        rows.setdefault(chunk.doc, []).append(row)
    return {doc: range(r[0], r[-1] + 1) for doc, r in rows.items()}


def _assemble(plan, previous, old_rows, embedder: Embedder):
    """Reused rows are copied from the previous build; new passages and their sentences are embedded in
    one batch (sentence-transformers sorts by length, so one big call batches best)."""
    new_texts: list[str] = []
    for doc, fresh in plan:
        for chunk in fresh or ():
            new_texts.append(embedding_text(chunk, doc.title))
            new_texts.extend(doc.text[s:e] for s, e in chunk.sentences)
    new_vectors = embedder.embed(new_texts) if new_texts else np.zeros((0, embedder.dimension), np.float32)

    chunks: list[Chunk] = []
    chunk_parts: list[np.ndarray] = []
    sentence_parts: list[np.ndarray] = []
    cursor = 0
    embedded = 0
    for doc, fresh in plan:
        if fresh is None:
            rows = old_rows[doc.path]
            chunks.extend(previous.chunks[rows.start:rows.stop])
            chunk_parts.append(previous.chunk_vectors[rows.start:rows.stop])
            first, last = previous.sentence_start[rows.start], previous.sentence_start[rows.stop]
            sentence_parts.append(previous.sentence_vectors[first:last].astype(np.float32))
            continue
        for chunk in fresh:
            chunks.append(chunk)
            chunk_parts.append(new_vectors[cursor:cursor + 1])
            n = len(chunk.sentences)
            sentence_parts.append(new_vectors[cursor + 1:cursor + 1 + n])
            cursor += 1 + n
            embedded += 1
    dim = embedder.dimension
    chunk_vectors = np.concatenate(chunk_parts) if chunk_parts else np.zeros((0, dim), np.float32)
    sentence_vectors = np.concatenate(sentence_parts) if sentence_parts else np.zeros((0, dim), np.float32)
    return chunks, chunk_vectors, sentence_vectors, embedded
