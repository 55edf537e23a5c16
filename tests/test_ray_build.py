"""The Ray build (`build --engine ray`) on a two-node cluster simulated on this machine: it writes what the local
build writes, re-embeds only what changed, survives a worker killed mid-build, and a build that fails anyway
leaves the last good index serving. One cluster serves the whole module: Ray's start-up is the slow part."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import app.ray_build  # noqa: E402
from app.build import build  # noqa: E402
from app.cli import main  # noqa: E402
from app.embedding import HashEmbedder  # noqa: E402
from app.errors import BuildFailed  # noqa: E402
from app.qa import QA  # noqa: E402
from app.ray_build import build_on_ray  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.store import IndexDir, load_store  # noqa: E402
from eval.bench import patiently  # noqa: E402

from conftest import DATA, ROOT, make_settings  # noqa: E402

QUESTION = "How much is the annual fee for a plot holder?"


def hash_on(device: str) -> HashEmbedder:
    return HashEmbedder()


class DiesOnce(HashEmbedder):
    """Kills its worker process on the first embed call of the whole build (the marker file says who went
    first), as a node lost mid-build would."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def embed(self, texts):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return super().embed(texts)
        os._exit(1)


class AlwaysDies(HashEmbedder):
    def embed(self, texts):
        os._exit(1)


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each, shared by every test here."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    nodes = patiently(lambda: Cluster(initialize_head=True,
                                      head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20}))
    patiently(lambda: nodes.add_node(num_cpus=1, object_store_memory=100 << 20))
    ray.init(address=nodes.address, log_to_driver=False, logging_level="ERROR")
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


def corpus_with_a_bad_file(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path, DATA / "corpus")
    (settings.corpus / "broken.txt").write_bytes(b"\x00\x01binary" * 50)
    return settings


def assert_same_index(a: Path, b: Path, dimension: int = 64) -> None:
    """Same records, manifest files, skipped files and acronyms; vectors equal within 1e-5."""
    x, y = load_store(a, HashEmbedder.model_id, dimension), load_store(b, HashEmbedder.model_id, dimension)
    assert list(x.chunks) == list(y.chunks) and len(x.chunks) > 0
    assert np.allclose(x.chunk_vectors, y.chunk_vectors, atol=1e-5)
    assert np.allclose(x.sentence_vectors, y.sentence_vectors, atol=1e-5)
    for key in ("files", "skipped", "counts", "index"):
        assert x.manifest[key] == y.manifest[key], key
    assert x.acronyms == y.acronyms
    assert x.lexical.vocab == y.lexical.vocab


def test_ray_build_equals_the_local_build(cluster, tmp_path):
    settings = corpus_with_a_bad_file(tmp_path)
    local = build(settings, HashEmbedder())
    on_ray = build_on_ray(Settings(corpus=settings.corpus, index=tmp_path / "ray-index"), hash_on)
    assert on_ray.workers == 2 and on_ray.engine == "ray"
    assert on_ray.to_json()["files"] == local.to_json()["files"]
    assert ("broken.txt", "binary data, not text") in {(s.path, s.reason) for s in on_ray.skipped_files}
    assert {"hash", "ray", "embed (worker s)", "write", "publish"} <= set(on_ray.stages)
    assert_same_index(settings.index, tmp_path / "ray-index")
    answer = QA(Settings(corpus=settings.corpus, index=tmp_path / "ray-index"), HashEmbedder()).ask(QUESTION)
    assert "annual fee of 25 euros" in answer.citations[0].quote


def test_an_edit_re_embeds_only_that_file(cluster, tmp_path):
    settings = make_settings(tmp_path, DATA / "corpus")
    first = build_on_ray(settings, hash_on)
    again = build_on_ray(settings, hash_on)
    assert not again.rebuilt and again.embedded_chunks == 0 and again.workers == 0  # no cluster work at all
    notes = settings.corpus / "lighthouse-notes.txt"
    notes.write_text(notes.read_text(encoding="utf-8") + "\nA solar foghorn was fitted in 2023.\n", encoding="utf-8")
    edited = build_on_ray(settings, hash_on)
    assert (edited.added, edited.changed, edited.removed, edited.unchanged) == (0, 1, 0, first.added - 1)
    assert 0 < edited.embedded_chunks == load_store(settings.index, HashEmbedder.model_id, 64) \
        .manifest["files"]["lighthouse-notes.txt"]["chunks"] < edited.chunks
    build(Settings(corpus=settings.corpus, index=tmp_path / "local-index"), HashEmbedder())
    assert_same_index(settings.index, tmp_path / "local-index")


def test_a_worker_killed_mid_build_is_replaced_and_the_index_is_complete(cluster, tmp_path):
    settings = make_settings(tmp_path, DATA / "corpus")
    marker = tmp_path / "a-worker-died"
    report = build_on_ray(settings, lambda device: DiesOnce(str(marker)))
    assert marker.exists()  # a worker did die
    build(Settings(corpus=settings.corpus, index=tmp_path / "local-index"), HashEmbedder())
    assert_same_index(settings.index, tmp_path / "local-index")
    assert report.embedded_chunks == report.chunks


def test_a_build_that_fails_anyway_leaves_the_last_good_index_serving(cluster, tmp_path, capsys, monkeypatch):
    settings = make_settings(tmp_path, DATA / "corpus")
    build_on_ray(settings, hash_on)
    before = IndexDir(settings.index).current()
    serving = QA(settings, HashEmbedder())
    assert not serving.ask(QUESTION).abstained
    (settings.corpus / "garden-guide.md").write_text("# Garden\n\nThe fee is now 30 euros.\n", encoding="utf-8")
    with pytest.raises(BuildFailed, match="last good index is still serving"):
        build_on_ray(settings, lambda device: AlwaysDies(), retries=1)
    assert IndexDir(settings.index).current() == before
    assert not [p for p in (settings.index / "builds").iterdir() if p.name.startswith(".tmp-")]
    assert "annual fee of 25 euros" in serving.ask(QUESTION).citations[0].quote
    assert "annual fee of 25 euros" in QA(settings, HashEmbedder()).ask(QUESTION).citations[0].quote

    monkeypatch.setattr(app.ray_build, "model_on", lambda device: AlwaysDies())  # the CLI: one line, status 1
    monkeypatch.setattr(app.ray_build, "RETRIES", 0)
    code = main(["build", "--engine", "ray", "--corpus", str(settings.corpus), "--index", str(settings.index)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("verbatim: the Ray build failed") and err.count("\n") == 1


def test_cli_builds_on_ray_and_reports_workers_and_stages(cluster, tmp_path, capsys, monkeypatch):
    settings = make_settings(tmp_path, DATA / "corpus")
    monkeypatch.setattr(app.ray_build, "model_on", hash_on)
    code = main(["build", "--engine", "ray", "--json", "--corpus", str(settings.corpus),
                 "--index", str(settings.index)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["engine"] == "ray" and out["workers"] == 2 and out["embedded_chunks"] == out["chunks"]
    assert {"added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded_chunks", "seconds"} <= set(out)


def test_the_local_path_never_imports_ray(tmp_path):
    settings = make_settings(tmp_path, DATA / "corpus")
    script = (
        "import sys\nfrom pathlib import Path\nfrom app.cli import main\nfrom app.embedding import HashEmbedder\n"
        "import app.qa\napp.qa.default_embedder = HashEmbedder\n"
        f"assert main(['build', '--corpus', {str(settings.corpus)!r}, '--index', {str(settings.index)!r}]) == 0\n"
        "assert main(['ask', 'annual fee', '--no-build', '--corpus', "
        f"{str(settings.corpus)!r}, '--index', {str(settings.index)!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
