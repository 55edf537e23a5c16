"""The index on disk: a folder of plain files (JSON, JSON Lines, .npy, .npz, FAISS), never pickle.

Layout under the index folder (see index/README.md):

    current -> builds/<build id>     symlink, swapped atomically when a build is complete
    builds/<build id>/               manifest.json, chunks.jsonl, chunk_rows.npy, chunk_vectors.npy,
                                     sentence_vectors.npy, lexical.npz, lexical_vocab.json, acronyms.json
                                     [, dense.faiss]
    .lock                            held by the one build that may run at a time

A reader resolves `current` once and reads a complete build; a build in progress writes a folder no
reader looks at. The store knows arrays and records, not the model.

Loading is cheap at a million passages: vectors and records are read a few rows at a time, when asked for
(rowfile.py; chunk_rows.npy holds each record's byte offset and first sentence row), and only files up to
`HASH_ON_LOAD_BYTES` are hashed on load; larger ones are checked by size and shape (the build hashed them all).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import BuildLocked, IndexMismatch, IndexMissing
from .lexical import BM25
from .records import Chunk
from .rowfile import OpenFile, RowFile
from .settings import FORMAT_VERSION

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200  # faiss's default 40 gave recall@10 0.85 at 1M passages (eval.bench); 200: 0.99 at 250k
HNSW_EF_SEARCH = 2048  # recall@10 0.98 after re-scoring at 1M passages, 7.5 ms a query (0.71 at 128; eval.bench e2e)
REBUILD_FULL = "run `python -m app build --full` to rebuild it"
HASH_ON_LOAD_BYTES = 32 << 20  # larger artefacts are checked by size on load: hashing 5 GB would take 10 s


class ChunkTable(Sequence):
    """The passages of a build, parsed from chunks.jsonl when a row is read: a million `Chunk`s held as
    objects would cost seconds to load and gigabytes to keep. The last `CACHED_ROWS` read stay parsed: one
    question reads its twenty passages some 150 times, and the next question mostly the same ones. Rows
    naming a document outside the manifest's files are refused when read (an index may come from anyone)."""

    CACHED_ROWS = 4096  # about 8 MB of COVID-QA's passages (tracemalloc)

    def __init__(self, path: Path, offsets: np.ndarray, files: dict) -> None:
        self._offsets = offsets
        # no reference back to the table, so a replaced build's table is freed (and its file closed) at once
        self._parsed = functools.lru_cache(maxsize=self.CACHED_ROWS)(
            functools.partial(_read_chunk, OpenFile(path), offsets, files))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        return self._parsed(int(row))


def _read_chunk(file: OpenFile, offsets: np.ndarray, files: dict, row: int) -> Chunk:
    """Row `row` of chunks.jsonl, parsed and checked."""
    start = int(offsets[row])
    line = file.read(start, int(offsets[row + 1]) - start)
    try:
        chunk = chunk_from_json(json.loads(line))
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexMismatch(f"index record {row} cannot be read ({exc}); {REBUILD_FULL}") from None
    if chunk.doc not in files:
        raise IndexMismatch(f"index record {row} names a document outside its corpus; {REBUILD_FULL}")
    return chunk


@dataclass
class Store:
    """One complete, verified build, loaded for searching."""

    folder: Path
    manifest: dict
    chunks: Sequence[Chunk]  # a ChunkTable when loaded
    chunk_vectors: np.ndarray | RowFile  # float32 (passages, dim), rows read on demand when loaded
    sentence_vectors: np.ndarray | RowFile  # float16 (sentences, dim), passage by passage, likewise
    sentence_start: np.ndarray  # first sentence row of each passage; len = passages + 1
    dense: object  # a faiss index over chunk_vectors
    lexical: BM25
    acronyms: dict[str, str]

    @functools.cached_property
    def titles(self) -> dict[str, str]:
        return {path: info["title"] for path, info in self.manifest["files"].items()}

    def sentence_rows(self, row: int) -> range:
        return range(int(self.sentence_start[row]), int(self.sentence_start[row + 1]))

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        k = min(k, len(self.chunks))
        if k <= 0:
            return []
        scores, rows = self.dense.search(query_vector.reshape(1, -1).astype(np.float32), k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]


# --- writing ---------------------------------------------------------------------------------------------


def chunk_to_json(chunk: Chunk) -> dict:
    return {
        "doc": chunk.doc, "start": chunk.start, "end": chunk.end, "section": chunk.section, "page": chunk.page,
        "sha": hashlib.sha256(chunk.text.encode("utf-8")).hexdigest()[:16], "text": chunk.text,
        "sentences": [list(s) for s in chunk.sentences],
    }


def chunk_from_json(row: dict) -> Chunk:
    return Chunk(row["doc"], row["start"], row["end"], row["text"], row["section"], row["page"],
                 tuple((s, e) for s, e in row["sentences"]))


def dense_index(vectors: np.ndarray, exact_limit: int):
    """Exact inner-product search up to `exact_limit` passages, HNSW (8-bit codes) above it."""
    import faiss

    dim = vectors.shape[1]
    if len(vectors) <= exact_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.train(vectors)
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(vectors)
    return index


def index_description(index) -> dict:
    import faiss

    if isinstance(index, faiss.IndexFlatIP):
        return {"type": "flat", "metric": "inner_product"}
    return {"type": "hnsw_sq8", "metric": "inner_product", "M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION,
            "ef_search": HNSW_EF_SEARCH}


def open_vectors(folder: Path, chunks: int, sentences: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """Create `folder` (new, private) with its two vector files, memory-mapped for writing row by row: a
    build of a million passages never holds its vectors in memory."""
    folder.mkdir(parents=True)
    chunk_vectors = np.lib.format.open_memmap(folder / "chunk_vectors.npy", "w+", np.float32, (chunks, dimension))
    sentence_vectors = np.lib.format.open_memmap(folder / "sentence_vectors.npy", "w+", np.float16,
                                                 (sentences, dimension))
    return chunk_vectors, sentence_vectors


def write_build(folder: Path, manifest: dict, chunks: Iterable[Chunk], lexical: BM25, acronyms: dict[str, str],
                exact_limit: int) -> None:
    """Write the rest of a build into `folder` (whose vectors `open_vectors` made and the build filled):
    records, row offsets, lexical index, acronyms, dense index; checksums last, manifest very last."""
    import faiss

    offsets, sentence_start = [0], [0]
    with open(folder / "chunks.jsonl", "wb") as out:
        for chunk in chunks:
            line = (json.dumps(chunk_to_json(chunk), ensure_ascii=False) + "\n").encode("utf-8")
            out.write(line)
            offsets.append(offsets[-1] + len(line))
            sentence_start.append(sentence_start[-1] + len(chunk.sentences))
    rows = np.stack([np.asarray(offsets, np.int64), np.asarray(sentence_start, np.int64)], axis=1)
    np.save(folder / "chunk_rows.npy", rows, allow_pickle=False)
    files = ["chunks.jsonl", "chunk_rows.npy", "chunk_vectors.npy", "sentence_vectors.npy", *lexical.save(folder),
             "acronyms.json"]
    (folder / "acronyms.json").write_text(json.dumps(acronyms, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    index = dense_index(np.load(folder / "chunk_vectors.npy", mmap_mode="r", allow_pickle=False), exact_limit)
    if not isinstance(index, faiss.IndexFlatIP):
        faiss.write_index(index, str(folder / "dense.faiss"))
        files.append("dense.faiss")
    manifest = dict(manifest, index=index_description(index), artifacts={name: _checksum(folder / name) for name in files})
    _write_synced(folder / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    for name in files:
        _fsync(folder / name)


def _checksum(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


# --- the index folder ------------------------------------------------------------------------------------


class IndexDir:
    """The index folder: which build is current, new private build folders, the atomic swap, the lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.builds = self.root / "builds"
        self.link = self.root / "current"

    def current(self) -> Path | None:
        try:
            target = os.readlink(self.link)
        except OSError:
            return None
        path = (self.root / target).resolve()
        return path if path.is_dir() else None

    def new_build_folder(self) -> Path:
        self.builds.mkdir(parents=True, exist_ok=True)
        return self.builds / f".tmp-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"

    def publish(self, private: Path) -> Path:
        """Make a finished build current in one atomic rename, then remove builds older than the last two."""
        final = self.builds / private.name.removeprefix(".tmp-")
        replaced = self.current()
        private.rename(final)
        tmp_link = self.root / f".current-{uuid.uuid4().hex[:8]}"
        os.symlink(os.path.relpath(final, self.root), tmp_link)
        os.replace(tmp_link, self.link)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._prune(keep={final.name} | ({replaced.name} if replaced else set()))
        return final

    def _prune(self, keep: set[str]) -> None:
        """Keep the new build and the one it replaced (a reader may still be loading it); drop the rest,
        including private folders left by interrupted builds (unless recent: a build may be running)."""
        for path in self.builds.iterdir():
            if path.name not in keep and not (path.name.startswith(".tmp-") and _recent(path)):
                shutil.rmtree(path, ignore_errors=True)

    @contextmanager
    def lock(self, wait_seconds: float) -> Iterator[None]:
        """One build at a time: wait up to `wait_seconds` for another build, then fail clearly."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise BuildLocked(
                            f"another build of {self.root} is running; wait for it to finish and try again"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _recent(path: Path, seconds: float = 3600) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return False


# --- reading ---------------------------------------------------------------------------------------------


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexMismatch(f"the index at {folder} has no readable manifest ({exc}); run `python -m app build --full`") from None


def check_manifest(manifest: dict, model_id: str, dimension: int) -> None:
    """Refuse an index built by another format version or model: its vectors would give wrong answers."""
    fix = REBUILD_FULL
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatch(f"index format {manifest.get('format_version')} is not this program's {FORMAT_VERSION}; {fix}")
    model = manifest.get("model", {})
    if model.get("id") != model_id or model.get("dimension") != dimension:
        raise IndexMismatch(
            f"index was built with {model.get('id')} ({model.get('dimension')} dimensions), "
            f"this program embeds with {model_id} ({dimension}); {fix}"
        )


def verify_artifacts(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists is there with its recorded size (and sha256, up to `HASH_ON_LOAD_BYTES`),
    and the row counts agree (read from the .npy headers, without loading the arrays)."""
    for name, expected in manifest.get("artifacts", {}).items():
        path = folder / name
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        if size != expected.get("bytes") or (size <= HASH_ON_LOAD_BYTES and _checksum(path) != expected):
            raise IndexMismatch(f"index file {name} is missing or damaged; {REBUILD_FULL}")
    _row_arrays(folder, manifest)


def _row_arrays(folder: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chunk_rows, chunk_vectors, sentence_vectors), the vectors read on demand (rowfile.py), with their row
    counts checked against the manifest and each other."""
    try:
        counts = manifest["counts"]
        rows = np.load(folder / "chunk_rows.npy", allow_pickle=False)
        chunk_vectors = RowFile(folder / "chunk_vectors.npy")
        sentence_vectors = RowFile(folder / "sentence_vectors.npy")
        records_bytes = (folder / "chunks.jsonl").stat().st_size
        consistent = (rows.ndim == 2 and rows.shape[1] == 2 and len(rows) == counts["chunks"] + 1
                      and chunk_vectors.shape[0] == counts["chunks"] and rows[-1, 0] == records_bytes
                      and sentence_vectors.shape[0] == counts["sentences"] == rows[-1, 1])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexMismatch(f"index at {folder} cannot be read ({exc}); {REBUILD_FULL}") from None
    if not consistent:
        raise IndexMismatch(f"index row counts disagree with its manifest; {REBUILD_FULL}")
    return rows, chunk_vectors, sentence_vectors


def safe_doc_path(path: str) -> bool:
    """A corpus-relative path that cannot point outside the corpus (an index may come from anyone)."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts and "\\" not in path


def load_store(index_root: Path, model_id: str, dimension: int, folder: Path | None = None) -> Store:
    """Load and verify the current build (or `folder`): manifest, sizes (and small files' checksums), row
    counts, dimensions. Vectors and records are read on demand (rowfile.py), so this takes seconds at a
    million passages."""
    folder = folder or IndexDir(index_root).current()
    if folder is None:
        raise IndexMissing(f"no index at {index_root}; run `python -m app build`")
    manifest = read_manifest(folder)
    check_manifest(manifest, model_id, dimension)
    if not all(safe_doc_path(p) for p in manifest.get("files", {})):
        raise IndexMismatch(f"index at {folder} names documents outside its corpus; {REBUILD_FULL}")
    verify_artifacts(folder, manifest)
    rows, chunk_vectors, sentence_vectors = _row_arrays(folder, manifest)
    try:
        chunks = ChunkTable(folder / "chunks.jsonl", np.array(rows[:, 0]), manifest["files"])
        lexical = BM25.load(folder)
        acronyms = json.loads((folder / "acronyms.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise IndexMismatch(f"index at {folder} cannot be read ({exc}); {REBUILD_FULL}") from None
    sentence_start = np.array(rows[:, 1])
    if (
        chunk_vectors.shape[1:] != (dimension,) or sentence_vectors.shape[1:] != (dimension,)
        or np.any(np.diff(sentence_start) < 0) or np.any(np.diff(rows[:, 0]) <= 0)
        or lexical.matrix.shape[1] != len(chunks)
    ):
        raise IndexMismatch(f"index row counts disagree with its manifest; {REBUILD_FULL}")
    if (folder / "dense.faiss").exists():
        import faiss

        dense = faiss.read_index(str(folder / "dense.faiss"))
        dense.hnsw.efSearch = HNSW_EF_SEARCH  # a search setting: this version's, whatever the build used
    else:
        dense = dense_index(np.asarray(chunk_vectors), exact_limit=len(chunks))
    return Store(folder, manifest, chunks, chunk_vectors, sentence_vectors, sentence_start, dense, lexical, acronyms)
