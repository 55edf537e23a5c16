"""The index on disk: the layout index/README.md promises, a manifest that records how it was built, rows
that line up, an atomic `current` link, and no pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app.qa import QA
from app.settings import FORMAT_VERSION, ChunkingSettings
from app.store import IndexDir, load_store

PICKLE_PROTOCOL_MARKER = b"\x80"  # every pickle since protocol 2 starts with PROTO (0x80) and a version byte


def current_folder(qa: QA) -> Path:
    folder = IndexDir(qa.settings.index).current()
    assert folder is not None
    return folder


def test_build_folder_layout(fake_qa):
    index = fake_qa.settings.index
    link = index / "current"
    assert link.is_symlink()
    folder = current_folder(fake_qa)
    assert folder.parent == (index / "builds").resolve()
    assert not folder.name.startswith(".tmp-")
    names = {p.name for p in folder.iterdir()}
    assert {"manifest.json", "chunks.jsonl", "chunk_vectors.npy", "sentence_vectors.npy", "lexical.npz",
            "lexical_vocab.json", "acronyms.json"} <= names
    assert not [p for p in (index / "builds").iterdir() if p.name.startswith(".tmp-")]


def test_manifest_records_how_the_index_was_built(fake_qa):
    folder = current_folder(fake_qa)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["model"] == {"id": "test/hash-embedder", "dimension": 64, "normalized": True}
    assert manifest["index"] == {"type": "flat", "metric": "inner_product"}
    assert manifest["chunking"] == ChunkingSettings().to_json()
    assert manifest["app_version"] and manifest["built_at"]
    corpus = fake_qa.settings.corpus
    assert sorted(manifest["files"]) == [  # hidden files are not part of the corpus
        "garden-guide.md", "harbour-report.pdf", "lighthouse-notes.txt", "museum-page.html", "structured-readout.txt",
    ]
    for path, info in manifest["files"].items():
        assert info["sha256"] == hashlib.sha256((corpus / path).read_bytes()).hexdigest()
    assert manifest["files"]["harbour-report.pdf"]["pages"] == 2
    assert manifest["files"]["garden-guide.md"]["title"] == "Community Garden Guide"
    for name, expected in manifest["artifacts"].items():
        data = (folder / name).read_bytes()
        assert expected == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_records_line_up_with_vector_rows(fake_qa):
    folder = current_folder(fake_qa)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    chunk_vectors = np.load(folder / "chunk_vectors.npy", allow_pickle=False)
    sentence_vectors = np.load(folder / "sentence_vectors.npy", allow_pickle=False)
    assert len(rows) == manifest["counts"]["chunks"] == chunk_vectors.shape[0]
    assert sum(len(r["sentences"]) for r in rows) == manifest["counts"]["sentences"] == sentence_vectors.shape[0]
    assert chunk_vectors.dtype == np.float32 and sentence_vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(chunk_vectors, axis=1), 1.0, atol=1e-5)
    assert sum(manifest["files"][p]["chunks"] for p in manifest["files"]) == len(rows)
    corpus = fake_qa.settings.corpus
    for row in rows:
        assert row["sha"] == hashlib.sha256(row["text"].encode("utf-8")).hexdigest()[:16]
        if row["doc"].endswith((".txt", ".md")):
            assert open(corpus / row["doc"], encoding="utf-8").read()[row["start"]:row["end"]] == row["text"]


def test_loaded_store_matches_what_was_written(fake_qa):
    folder = current_folder(fake_qa)
    store = load_store(fake_qa.settings.index, "test/hash-embedder", 64)
    assert store.folder == folder
    # the dense index finds a passage's own vector first
    row = next(i for i, c in enumerate(store.chunks) if "Gull Island" in c.text)
    assert store.search_dense(store.chunk_vectors[row], 1)[0][0] == row
    assert np.array_equal(store.chunk_vectors, np.load(folder / "chunk_vectors.npy", allow_pickle=False))
    assert [c.text for c in store.chunks] == [
        json.loads(line)["text"] for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert store.titles["harbour-report.pdf"] == "Harbour Report"
    assert store.chunks[0] is store.chunks[0] and store.chunks[-1] is store.chunks[len(store.chunks) - 1]  # kept
    table = weakref.ref(store.chunks)
    del store
    assert table() is None  # freed at once, with its open file: nothing it keeps points back at it


def test_no_pickle_in_any_build_file(fake_qa):
    fake_qa.build(full=True)  # two builds on disk: the current one and the one kept for readers
    builds = [p for p in (fake_qa.settings.index / "builds").iterdir()]
    assert len(builds) == 2
    for folder in builds:
        for path in folder.iterdir():
            data = path.read_bytes()
            assert not data.startswith(PICKLE_PROTOCOL_MARKER), path.name
            if path.suffix == ".npy":
                assert np.load(path, allow_pickle=False).dtype != object
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as arrays:
                    for name in arrays.files:
                        assert arrays[name].dtype != object  # reading an object array would raise
            elif path.suffix in (".json", ".jsonl"):
                for line in data.decode("utf-8").splitlines() if path.suffix == ".jsonl" else [data.decode("utf-8")]:
                    json.loads(line)
            else:
                raise AssertionError(f"unexpected file type in a build: {path.name}")
            try:
                pickle.loads(data)
            except Exception:
                continue
            raise AssertionError(f"{path.name} unpickles")


def test_a_new_build_swaps_current(fake_qa):
    """Which older builds are pruned is checked (with controlled build ids) in the test below."""
    first = current_folder(fake_qa)
    fake_qa.build(full=True)
    second = current_folder(fake_qa)
    fake_qa.build(full=True)
    third = current_folder(fake_qa)
    assert len({first, second, third}) == 3
    assert third.is_dir()
    assert os.readlink(fake_qa.settings.index / "current") == os.path.relpath(third, fake_qa.settings.index)
    assert fake_qa.store().folder == third  # a running QA picks up the new build


def test_the_build_just_replaced_is_kept_for_readers(fake_qa, monkeypatch):
    """Three builds within one second whose random id suffixes sort a, 0, 1: the second must survive the third."""
    import app.store

    suffixes = iter(["a" * 32, "f" * 32, "0" * 32, "f" * 32, "1" * 32, "f" * 32])  # build folder, then link name
    monkeypatch.setattr(app.store, "uuid", SimpleNamespace(uuid4=lambda: SimpleNamespace(hex=next(suffixes))))
    monkeypatch.setattr(app.store, "time", SimpleNamespace(
        strftime=lambda fmt: "20991231T235959", time=time.time, monotonic=time.monotonic, sleep=time.sleep))
    for _ in range(3):
        replaced = current_folder(fake_qa)
        fake_qa.build(full=True)
    newest = current_folder(fake_qa)
    assert newest.name.endswith("11111111") and replaced.name.endswith("00000000")
    remaining = {p.name for p in (fake_qa.settings.index / "builds").iterdir()}
    assert remaining == {replaced.name, newest.name}


def test_vector_rows_read_on_demand_equal_the_array_and_refuse_what_is_not_one(tmp_path):
    from app.rowfile import RowFile

    array = np.arange(40 * 3, dtype=np.float16).reshape(40, 3)
    np.save(tmp_path / "v.npy", array)
    rows = RowFile(tmp_path / "v.npy")
    assert rows.shape == (40, 3) and len(rows) == 40 and rows.dtype == np.float16
    assert np.array_equal(rows[7], array[7]) and np.array_equal(rows[-1], array[-1])
    assert np.array_equal(rows[5:9], array[5:9]) and np.array_equal(rows[::7], array[::7])
    assert np.array_equal(rows[[3, 1, 3]], array[[3, 1, 3]]) and np.array_equal(np.asarray(rows), array)
    with pytest.raises(IndexError):
        rows[40]
    (tmp_path / "short.npy").write_bytes((tmp_path / "v.npy").read_bytes()[:-10])
    with pytest.raises(ValueError, match="shorter"):
        RowFile(tmp_path / "short.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a C-ordered array of numbers"):
        RowFile(tmp_path / "objects.npy")
