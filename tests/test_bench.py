"""The benchmark runs end to end on tiny sizes and reports every figure beside its baseline; the synthetic
corpus generator is deterministic and yields the number of passages asked for."""

from __future__ import annotations

import json
import math

import pytest

from app.chunking import chunk_document
from app.documents import load_corpus
from app.settings import ChunkingSettings
from app.store import HNSW_EF_CONSTRUCTION, HNSW_M
from eval import bench, synth

from conftest import DATA

EXPECTED = [
    ("latency", "answer p50"), ("latency", "answer p95"), ("latency", "peak RSS"),
    ("cold", "ask --no-build to first answer"), ("cold", "ask peak RSS"), ("cold", "CLI imports gradio/matplotlib"),
    ("build", "full build"), ("build", "full build overhead"), ("build", "full build time outside embedding"),
    ("build", "incremental build (CLI, 1 paper edited)"),
    ("build", "incremental build peak RSS"), ("build", "peak RSS"),
    ("concurrency", "direct (threads -> QA.ask), 1 client"), ("concurrency", "direct (threads -> QA.ask), 2 clients"),
    ("concurrency", "peak RSS"),
    ("scale", "40 passages: build"), ("scale", "40 passages: index on disk"), ("scale", "40 passages: peak RSS"),
    ("scale", "40 passages: answer p50"), ("scale", "40 passages: answer p95"),
    ("scale", "80 passages: build"), ("scale", "80 passages: answer p95"),
    ("million", "hnsw_sq8 (app default): search p95"), ("million", "hnsw_sq8 (app default): recall@10"),
    ("million", "retrieval RSS (vectors + index)"), ("million", f"M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} efSearch=32: recall@10"),
    ("million", "hnsw_sq8 (app default): recall@10 after re-scoring the 40"),
    ("bm25", "BM25 query p50 at 3,000"), ("bm25", "BM25 query p95 at 3,000"), ("bm25", "BM25 fit"),
]


@pytest.mark.slow
def test_bench_reports_every_figure_beside_its_baseline(tmp_path, capsys):
    status = bench.main([
        "--million", "--no-isolate", "--json", "--workdir", str(tmp_path), "--limit", "3", "--repeats", "1",
        "--build-corpus", str(DATA / "corpus"), "--levels", "1,2", "--per-client", "1",
        "--sizes", "40,80", "--real-limit", "40", "--sample", "20", "--scale-questions", "2",
        "--million-size", "3000", "--exact-limit", "1000", "--ef-search", "32",
    ])
    out = json.loads(capsys.readouterr().out)
    assert status == 0, out["failed"]
    figures = [bench.Figure(**{k: v for k, v in row.items() if k != "ratio"}) for row in out["figures"]]
    names = {(f.section, f.name) for f in figures}
    assert [e for e in EXPECTED if e not in names] == []
    assert any(f.name.startswith("Gradio API") for f in figures)
    for f in figures:
        assert f.value is not None and math.isfinite(f.value), f  # an overhead may be negative: noise
        assert f.baseline is None or f.baseline > 0, f
    incremental = next(f for f in figures if f.name.startswith("incremental build (CLI"))
    assert "UNEXPECTED" not in incremental.note  # exactly the edited file was re-embedded
    text = bench.table(figures)
    for f in figures:
        assert f.name in text


def test_synthetic_corpus_is_deterministic_and_has_the_passages_asked_for(tmp_path):
    pool = synth.load_pool()
    first = synth.write_corpus(tmp_path / "a", 120, seed=7, pool=pool)
    second = synth.write_corpus(tmp_path / "b", 120, seed=7, pool=pool)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert synth.write_corpus(tmp_path / "c", 120, seed=8, pool=pool)[0].read_bytes() != first[0].read_bytes()
    docs, skipped = load_corpus(tmp_path / "a", 10**8)
    passages = sum(len(chunk_document(d, ChunkingSettings())) for d in docs)
    assert skipped == [] and 118 <= passages <= 120
    source_sentences = [s for group in pool.groups for s in group]
    assert any(s in d.text for d in docs for s in source_sentences)  # real sentences, recombined


def test_import_report_names_the_chain_that_pulls_in_a_forbidden_package():
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       900 |     350000 |     gradio",
        "import time:       100 |     351000 |   app.ui",
        "import time:       200 |     352000 | app.cli",
        "import time:       500 |     800000 | torch",
    ])
    found, chains, heavy = bench.import_report(stderr)
    assert found == ["gradio"] and chains == ["gradio <- app.ui <- app.cli"]
    assert heavy.startswith("torch 800 ms")


@pytest.mark.slow
def test_end_to_end_and_ray_sections_report_their_figures(tmp_path, capsys):
    """`--only e2e,ray` on tiny sizes: the million-passage path (build, fresh-process load, answers, recall)
    and the Ray comparison (local, 1 and 2 nodes, merge, projection)."""
    status = bench.main([
        "--only", "e2e,ray", "--json", "--workdir", str(tmp_path), "--million-size", "1500", "--exact-limit", "500",
        "--scale-questions", "4", "--ray-passages", "12", "--ray-merge", "300",
    ])
    out = json.loads(capsys.readouterr().out)
    assert status == 0, out["failed"]
    names = {row["name"]: row for row in out["figures"]}
    for name in ("load (QA.store(), fresh process)", "RSS after load", "answer p95 beyond the models",
                 "retrieval p95 beyond the encoder", "hnsw_sq8 recall@10 after re-scoring the 40",
                 "hnsw_sq8 recall@10", "local build", "Ray build, 1 local node", "Ray build, 2 local nodes",
                 "Ray overhead on 1 node", "driver merge + publish at 300 passages",
                 "PROJECTED 10M passages on 16 nodes"):
        assert name in names and names[name]["value"] is not None, name
    assert "projection" in names["PROJECTED 10M passages on 16 nodes"]["note"]
    assert names["hnsw_sq8 recall@10"]["value"] >= 0.9
