"""Build the index on a Ray cluster: `python -m app build --engine ray [--ray-address auto|ray://HOST:PORT]`.

Embedding is what a build spends its time on, so that is what goes to the cluster. The driver (this process)
hashes every file and decides what changed by the same content-hash rule as a local build; the changed files
are read, chunked and embedded by a Ray Data pipeline, `map_batches` over an actor pool whose actors load the
model once each (one per GPU where the cluster has GPUs, else one per node, using that node's CPUs). The
driver merges their parts with the reused ones and publishes through app/build.py's `publish`: the same
files, the same atomic swap, so `serve` and `ask` need no change.

Workers read the corpus by the path the driver was given, so it must be one every node can read (a shared
filesystem). Ray is imported only here, and this module only when the Ray engine is asked for.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from typing import Callable

import numpy as np

from . import acronyms
from .build import (LOCK_WAIT_SECONDS, BuildReport, Part, _reusable_manifest, check_corpus, compare, kept_report,
                    no_documents, part_texts, previous_build, previous_part, publish)
from .chunking import chunk_document
from .documents import Unreadable, corpus_files, file_sha256, load_document, relpath
from .embedding import Embedder, SentenceTransformerEmbedder
from .errors import BuildFailed
from .records import Skipped
from .settings import ChunkingSettings, Settings
from .store import IndexDir, chunk_from_json, chunk_to_json

FILES_PER_BATCH = 8  # files per map_batches call: small enough to spread a small corpus over every worker
RETRIES = 3  # restarts of a dead worker, and retries of the files it held, before the build fails

MakeEmbedder = Callable[[str], Embedder]  # device ("cpu" or "cuda") -> embedder; called once per worker


def model_on(device: str) -> Embedder:
    """The app's model on `device`: what `--engine ray` embeds with."""
    return SentenceTransformerEmbedder(device=device)


class EmbedFiles:
    """One Ray Data worker: loads the embedder once, then reads, chunks and embeds batches of files.

    Each output row is one file: its part as JSON (title, pages, acronyms, passages) and its passage and
    sentence vectors as raw float32/float16 bytes, or the reason it was skipped."""

    def __init__(self, make_embedder: MakeEmbedder, device: str, corpus: str, max_bytes: int, chunking: dict) -> None:
        from pathlib import Path

        self.embedder = make_embedder(device)
        self.corpus = Path(corpus)
        self.max_bytes = max_bytes
        self.chunking = ChunkingSettings(**chunking)

    def __call__(self, batch: dict) -> dict:
        clock = time.perf_counter()
        parts: list[Part | Skipped] = []
        for path in batch["path"]:
            try:
                doc = load_document(self.corpus / str(path), self.corpus, self.max_bytes)
            except Unreadable as exc:
                parts.append(Skipped(str(path), str(exc)))
                continue
            parts.append(Part(doc.path, doc.sha256, doc.title, len(doc.pages) or None,
                              acronyms.find_definitions(doc.text), chunk_document(doc, self.chunking)))
        read_s = time.perf_counter() - clock
        clock = time.perf_counter()
        texts = [part_texts(p) if isinstance(p, Part) else [] for p in parts]
        vectors = self.embedder.embed([t for group in texts for t in group]) if any(texts) else None
        embed_s = time.perf_counter() - clock
        rows = []
        cursor = 0
        for part, group in zip(parts, texts):
            rows.append(encode_part(part, vectors[cursor:cursor + len(group)]) if isinstance(part, Part)
                        else {"path": part.path, "reason": part.reason, "part": "", "chunk_vectors": b"",
                              "sentence_vectors": b""})
            cursor += len(group)
        result = {k: np.array([row[k] for row in rows], dtype=object) for k in rows[0]} if rows else {}
        result["read_s"] = np.full(len(parts), read_s / max(len(parts), 1))
        result["embed_s"] = np.full(len(parts), embed_s / max(len(parts), 1))
        return result


def encode_part(part: Part, vectors: np.ndarray) -> dict:
    """A part and the vectors of its `part_texts` as a worker's output row (JSON and raw bytes: compact, and
    no pickle of our own crosses the cluster)."""
    is_passage = np.zeros(len(vectors), bool)
    is_passage[np.cumsum([0] + [1 + len(c.sentences) for c in part.chunks])[:-1]] = True
    return {"path": part.path, "reason": "",
            "part": json.dumps({"sha256": part.sha256, "title": part.title, "pages": part.pages,
                                "acronyms": part.acronyms, "chunks": [chunk_to_json(c) for c in part.chunks]},
                               ensure_ascii=False),
            "chunk_vectors": np.ascontiguousarray(vectors[is_passage], np.float32).tobytes(),
            "sentence_vectors": np.ascontiguousarray(vectors[~is_passage], np.float16).tobytes()}


def decode_part(row: dict, dimension: int) -> Part:
    """A worker's output row as a `Part` with its vectors."""
    info = json.loads(row["part"])
    chunks = [chunk_from_json(c) for c in info["chunks"]]
    passages = np.frombuffer(row["chunk_vectors"], np.float32).reshape(-1, dimension)
    sentences = np.frombuffer(row["sentence_vectors"], np.float16).reshape(-1, dimension)
    return Part(str(row["path"]), info["sha256"], info["title"], info["pages"], info["acronyms"], chunks,
                vectors=(passages, sentences))


def hash_corpus(settings: Settings, previously_skipped: set[str]) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """(path, sha256) of every file that may be indexed, and the files refused before any worker sees them:
    symbolic links, unsupported names, unreadable files, and files skipped last time that still are (checked
    here, so an unchanged corpus with a bad file in it starts no cluster work)."""
    paths, skipped = corpus_files(settings.corpus)
    hashes = []
    for path in paths:
        rel = relpath(path, settings.corpus)
        try:
            if rel in previously_skipped:
                load_document(path, settings.corpus, int(settings.max_file_mb * 1e6))
            hashes.append((rel, file_sha256(path)))
        except Unreadable as exc:
            skipped.append(Skipped(rel, str(exc)))
        except OSError as exc:
            skipped.append(Skipped(rel, f"cannot be read ({exc.strerror or exc})"))
    return hashes, skipped


def build_on_ray(settings: Settings, make_embedder: MakeEmbedder, address: str | None = None, full: bool = False,
                 retries: int | None = None, progress: bool | None = None) -> BuildReport:
    """Bring the index up to date with the corpus, embedding on a Ray cluster (started here, on this machine,
    when `address` is None and none is connected); see the module docstring. `retries`: restarts of a dead
    worker (default `RETRIES`); `progress`: a progress bar (default: on a terminal)."""
    import ray

    retries = RETRIES if retries is None else retries
    started = time.perf_counter()
    check_corpus(settings)
    probe = make_embedder("cpu")  # the model's id and dimension; nothing is loaded on the driver
    index_dir = IndexDir(settings.index)
    stages: dict[str, float] = {}
    with index_dir.lock(LOCK_WAIT_SECONDS):
        clock = time.perf_counter()
        manifest = None if full else _reusable_manifest(settings, probe, index_dir)
        hashes, skipped = hash_corpus(settings, {s["path"] for s in (manifest or {}).get("skipped", [])})
        plan = compare(manifest, hashes)
        stages["hash"] = time.perf_counter() - clock
        if plan.unchanged_since(skipped):
            return kept_report(plan, skipped, started, stages=stages, engine="ray", workers=0)
        previous = previous_build(settings, probe, plan)
        reused = {path: previous_part(previous, path) for path, status in plan.statuses if status == "unchanged"}
        todo = [path for path, _ in hashes if reused.get(path) is None]
        owns_ray = not ray.is_initialized()
        if owns_ray:
            _connect(ray, address)
        try:
            fresh, worker_skipped, workers = _embed_on_ray(ray, settings, make_embedder, probe.dimension, todo,
                                                           retries, stages, progress)
        finally:
            if owns_ray:
                ray.shutdown()
        order = {path: i for i, (path, _) in enumerate(hashes)}
        skipped += sorted(worker_skipped, key=lambda s: order[s.path])
        if worker_skipped:  # files that turned out unreadable count as absent, as in a local build
            gone = {s.path for s in worker_skipped}
            plan = compare(manifest, [(p, sha) for p, sha in hashes if p not in gone])
        parts = [reused.get(path) or fresh[path] for path, _ in hashes if path in fresh or reused.get(path)]
        if not parts:
            raise no_documents(settings, skipped)
        chunks, embedded = publish(settings, probe, index_dir, parts, previous, skipped, stages)
    return BuildReport(**plan.counts, skipped=len(skipped), chunks=chunks, embedded_chunks=embedded,
                       seconds=time.perf_counter() - started, skipped_files=tuple(skipped),
                       files=tuple(plan.statuses), stages=stages, engine="ray", workers=workers)


def _connect(ray, address: str | None) -> None:
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=True)
    except Exception as exc:  # Ray's own errors (ConnectionError, RuntimeError, ...) become one line
        raise BuildFailed(f"cannot connect to the Ray cluster at {address or 'a new local instance'} "
                          f"({_one_line(exc)}); start it with `ray start --head` or check --ray-address") from None


def worker_resources(ray) -> tuple[int, dict]:
    """How many workers, and what each asks for: one per GPU where there are GPUs, else one per alive node
    with that node's CPUs (the smallest node's, so that every node can hold one)."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    gpus = int(sum(n.get("GPU", 0) for n in nodes))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    return max(len(nodes), 1), {"num_cpus": min((n["CPU"] for n in nodes), default=1)}


def _embed_on_ray(ray, settings: Settings, make_embedder: MakeEmbedder, dimension: int, todo: list[str],
                  retries: int, stages: dict[str, float], progress: bool | None) -> tuple[dict, list, int]:
    """Run the pipeline over `todo`; returns (path -> Part with vectors, skipped files, workers)."""
    from tqdm import tqdm

    if not todo:
        return {}, [], 0
    clock = time.perf_counter()
    workers, resources = worker_resources(ray)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts files; Ray's would interleave with it
    context.print_on_execution_start = False
    blocks = max(1, min(len(todo), workers * 8, -(-len(todo) // FILES_PER_BATCH) * 4))
    workers = min(workers, blocks)
    with warnings.catch_warnings():  # Ray 2.60 has no named parameter for bounded restarts yet
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=blocks).map_batches(
            EmbedFiles, batch_size=FILES_PER_BATCH, batch_format="numpy", concurrency=workers,
            fn_constructor_args=(make_embedder, "cuda" if "num_gpus" in resources else "cpu", str(settings.corpus),
                                 int(settings.max_file_mb * 1e6), settings.chunking.to_json()),
            max_restarts=retries, max_task_retries=retries, **resources)
    fresh: dict[str, Part] = {}
    skipped: list[Skipped] = []
    read_s = embed_s = 0.0
    bar = tqdm(total=len(todo), unit="file", desc="embedding on Ray", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)  # None: only on a terminal
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for i in range(len(batch["path"])):
                row = {k: batch[k][i] for k in batch}
                read_s += float(row["read_s"])
                embed_s += float(row["embed_s"])
                if row["reason"]:
                    skipped.append(Skipped(str(row["path"]), str(row["reason"])))
                else:
                    fresh[str(row["path"])] = decode_part(row, dimension)
            bar.update(len(batch["path"]))
    except Exception as exc:  # any failure inside Ray ends this build only; the current index stays
        raise BuildFailed(f"the Ray build failed ({_one_line(exc)}); the last good index is still serving") from None
    finally:
        bar.close()
    stages.update({"ray": time.perf_counter() - clock, "read+chunk (worker s)": read_s, "embed (worker s)": embed_s})
    return fresh, skipped, workers


def _one_line(exc: BaseException) -> str:
    """The root cause of a Ray error, in one short line (Ray's own messages carry whole tracebacks)."""
    cause = getattr(exc, "cause", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = next((line for line in reversed(lines) if not line.startswith(("File ", "^", "Traceback"))), "")
    return f"{type(cause).__name__}: {text[:200]}" if text else type(cause).__name__
