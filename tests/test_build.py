"""Incremental builds: only what changed is embedded, answers follow the corpus, and a change of model or
chunking re-embeds everything. Also the command line (`build`, `status`, `ask`) through `app.cli.main`."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import app.qa
from app.build import embedding_text
from app.chunking import chunk_document
from app.cli import main
from app.documents import load_document
from app.embedding import HashEmbedder
from app.qa import QA
from app.settings import ChunkingSettings, Settings
from app.store import IndexDir

from conftest import DATA, make_settings

CONTRACT_KEYS = {"added", "changed", "removed", "unchanged", "skipped", "chunks", "embedded_chunks", "seconds"}


class CountingEmbedder(HashEmbedder):
    """The hash fake, remembering every text it was asked to embed."""

    def __init__(self, model_id: str = HashEmbedder.model_id) -> None:
        super().__init__()
        self.model_id = model_id
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return super().embed(texts)


def fresh_chunks(settings: Settings, paths: list[str]):
    """(document, passages) for each of `paths`, chunked from scratch."""
    for path in paths:
        doc = load_document(settings.corpus / path, settings.corpus, int(settings.max_file_mb * 1e6))
        yield doc, chunk_document(doc, settings.chunking)


def expected_texts(settings: Settings, paths: list[str]) -> list[str]:
    """What embedding `paths` from scratch means: each passage (with its heading context) and its sentences."""
    out = []
    for doc, chunks in fresh_chunks(settings, paths):
        for chunk in chunks:
            out.append(embedding_text(chunk, doc.title))
            out.extend(doc.text[s:e] for s, e in chunk.sentences)
    return out


def chunk_count(settings: Settings, paths: list[str]) -> int:
    return sum(len(chunks) for _, chunks in fresh_chunks(settings, paths))


@pytest.fixture
def counted(tmp_path) -> tuple[QA, CountingEmbedder]:
    embedder = CountingEmbedder()
    qa = QA(make_settings(tmp_path, DATA / "corpus"), embedder)
    qa.build()
    embedder.texts.clear()
    return qa, embedder


def edit_add_delete(corpus: Path) -> None:
    notes = corpus / "lighthouse-notes.txt"
    notes.write_text(notes.read_text(encoding="utf-8") + "\nA solar foghorn was fitted to the tower in 2023.\n",
                     encoding="utf-8")
    timetable = "Ferry Timetable\n\nThe first ferry to Gull Island leaves the harbour at 7.15 every weekday.\n"
    (corpus / "ferry-timetable.txt").write_text(timetable, encoding="utf-8")
    (corpus / "garden-guide.md").unlink()


def test_first_build_embeds_everything(tmp_path):
    embedder = CountingEmbedder()
    settings = make_settings(tmp_path, DATA / "corpus")
    report = QA(settings, embedder).build()
    paths = ["garden-guide.md", "harbour-report.pdf", "lighthouse-notes.txt", "museum-page.html",
             "structured-readout.txt"]
    assert (report.added, report.changed, report.removed, report.unchanged, report.skipped) == (5, 0, 0, 0, 0)
    assert report.embedded_chunks == report.chunks == chunk_count(settings, paths)
    assert sorted(embedder.texts) == sorted(expected_texts(settings, paths))


def test_edit_add_delete_embeds_only_what_changed(counted):
    qa, embedder = counted
    edit_add_delete(qa.settings.corpus)
    report = qa.build()
    assert (report.added, report.changed, report.removed, report.unchanged) == (1, 1, 1, 3)
    changed = ["lighthouse-notes.txt", "ferry-timetable.txt"]
    assert report.embedded_chunks == chunk_count(qa.settings, changed)
    assert sorted(embedder.texts) == sorted(expected_texts(qa.settings, changed))
    statuses = {f["path"]: f["status"] for f in report.to_json()["files"]}
    assert statuses == {"ferry-timetable.txt": "added", "lighthouse-notes.txt": "changed",
                        "garden-guide.md": "removed", "harbour-report.pdf": "unchanged",
                        "museum-page.html": "unchanged", "structured-readout.txt": "unchanged"}


def test_answers_follow_the_edit(counted):
    qa, _ = counted
    assert "garden-guide.md" in {c.doc for c in qa.ask("How much is the annual fee for a plot holder?").citations}
    edit_add_delete(qa.settings.corpus)
    qa.build()
    answer = qa.ask("When was the solar foghorn fitted to the tower?")
    assert not answer.abstained
    assert answer.citations[0].doc == "lighthouse-notes.txt"
    assert "solar foghorn was fitted to the tower in 2023" in answer.citations[0].quote
    ferry = qa.ask("When does the first ferry to Gull Island leave the harbour?")
    assert ferry.citations[0].doc == "ferry-timetable.txt"
    gone = qa.ask("How much is the annual fee for a plot holder?")
    assert "garden-guide.md" not in {c.doc for c in gone.citations}
    assert not any("garden-guide.md" == c.doc for c in qa.store().chunks)
    assert "euro" not in qa.store().lexical.vocab


def test_incremental_build_equals_a_full_build(counted, tmp_path):
    qa, _ = counted
    edit_add_delete(qa.settings.corpus)
    qa.build()
    fresh = QA(Settings(corpus=qa.settings.corpus, index=tmp_path / "fresh-index"), HashEmbedder())
    fresh.build()
    a, b = qa.store(), fresh.store()
    assert list(a.chunks) == list(b.chunks)
    assert np.array_equal(a.chunk_vectors, b.chunk_vectors)
    assert np.array_equal(a.sentence_vectors, b.sentence_vectors)
    assert a.manifest["files"] == b.manifest["files"]


def test_no_change_rebuild_embeds_nothing(counted):
    qa, embedder = counted
    before = IndexDir(qa.settings.index).current()
    report = qa.build()
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 0, 0, 5)
    assert report.embedded_chunks == 0 and embedder.texts == []
    assert report.chunks == len(qa.store().chunks)
    assert IndexDir(qa.settings.index).current() == before


def test_full_rebuild_embeds_everything(counted):
    qa, embedder = counted
    report = qa.build(full=True)
    assert report.embedded_chunks == report.chunks == len(qa.store().chunks)
    assert len(embedder.texts) == report.chunks + qa.store().manifest["counts"]["sentences"]


def test_changed_chunking_settings_reembed_everything(counted):
    qa, _ = counted
    before = len(qa.store().chunks)
    embedder = CountingEmbedder()
    settings = replace(qa.settings, chunking=ChunkingSettings(max_chars=150, min_chars=40))
    rechunked = QA(settings, embedder)
    report = rechunked.build()
    assert report.embedded_chunks == report.chunks > before  # smaller passages, all embedded
    manifest = rechunked.store().manifest
    assert manifest["chunking"] == settings.chunking.to_json()
    assert sorted(embedder.texts) == sorted(expected_texts(settings, sorted(manifest["files"])))


def test_changed_model_reembeds_everything(counted):
    qa, _ = counted
    other = CountingEmbedder(model_id="test/another-model")
    report = QA(qa.settings, other).build()
    assert report.embedded_chunks == report.chunks > 0
    assert QA(qa.settings, other).store().manifest["model"]["id"] == "test/another-model"


def test_status_reports_staleness_without_building(counted):
    from app.status import index_status

    qa, embedder = counted
    assert index_status(qa.settings)["stale"] is False
    edit_add_delete(qa.settings.corpus)
    status = index_status(qa.settings)
    assert status["stale"] is True
    assert status["changes"] == {"added": ["ferry-timetable.txt"], "changed": ["lighthouse-notes.txt"],
                                 "removed": ["garden-guide.md"]}
    assert embedder.texts == []


# --- the command line ----------------------------------------------------------------------------------------


@pytest.fixture
def cli_dirs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A corpus copy and an index folder; the CLI's embedder is the hash fake."""
    monkeypatch.setattr(app.qa, "default_embedder", HashEmbedder)
    for name in ("VERBATIM_CORPUS", "VERBATIM_INDEX", "VERBATIM_MAX_FILE_MB"):
        monkeypatch.delenv(name, raising=False)
    corpus = tmp_path / "corpus"
    shutil.copytree(DATA / "corpus", corpus)
    return corpus, tmp_path / "index"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_build_json_is_the_last_line(cli_dirs, capsys):
    corpus, index = cli_dirs
    code, out, err = run_cli(capsys, "build", "--json", "--corpus", str(corpus), "--index", str(index))
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert CONTRACT_KEYS <= set(report)
    assert report["added"] == 5 and report["embedded_chunks"] == report["chunks"] > 0
    (corpus / "garden-guide.md").unlink()
    code, out, _ = run_cli(capsys, "build", "--json", "--corpus", str(corpus), "--index", str(index))
    report = json.loads(out.strip().splitlines()[-1])
    assert (report["removed"], report["unchanged"], report["embedded_chunks"]) == (1, 4, 0)


def test_cli_environment_names_the_folders(cli_dirs, capsys, monkeypatch):
    corpus, index = cli_dirs
    monkeypatch.setenv("VERBATIM_CORPUS", str(corpus))
    monkeypatch.setenv("VERBATIM_INDEX", str(index))
    code, out, _ = run_cli(capsys, "build", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["added"] == 5
    assert IndexDir(index).current() is not None


def test_cli_folders_may_come_before_the_subcommand(cli_dirs, capsys):
    corpus, index = cli_dirs  # as the usage line shows: python -m app [--corpus C] [--index I] build
    code, out, _ = run_cli(capsys, "--corpus", str(corpus), "--index", str(index), "build", "--json")
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["added"] == 5
    assert IndexDir(index).current() is not None


def test_cli_status_json(cli_dirs, capsys):
    corpus, index = cli_dirs
    run_cli(capsys, "build", "--corpus", str(corpus), "--index", str(index))
    code, out, _ = run_cli(capsys, "status", "--json", "--corpus", str(corpus), "--index", str(index))
    assert code == 0
    status = json.loads(out)
    assert status["documents"] == 5 and status["stale"] is False
    assert status["model"]["id"] == "test/hash-embedder"
    (corpus / "lighthouse-notes.txt").write_text("Rewritten.\n", encoding="utf-8")
    _, out, _ = run_cli(capsys, "status", "--json", "--corpus", str(corpus), "--index", str(index))
    assert json.loads(out)["changes"]["changed"] == ["lighthouse-notes.txt"]


def test_cli_ask_json_contract(cli_dirs, capsys):
    corpus, index = cli_dirs
    code, out, _ = run_cli(capsys, "ask", "How much is the annual fee for a plot holder?", "--json",
                           "--corpus", str(corpus), "--index", str(index))
    assert code == 0
    answer = json.loads(out.strip().splitlines()[-1])
    assert set(answer) == {"question", "abstained", "answer", "citations", "reader"}
    assert answer["question"] == "How much is the annual fee for a plot holder?"
    assert answer["abstained"] is False
    first = answer["citations"][0]
    assert {"id", "quote", "doc", "title", "section", "start", "end", "score"} <= set(first)
    assert first["id"] == 1 and first["doc"] == "garden-guide.md" and first["title"] == "Community Garden Guide"
    assert "annual fee of 25 euros" in first["quote"]
    assert first["quote"].split()[0] in answer["answer"]
    for c in answer["citations"]:
        text = open(corpus / c["doc"], encoding="utf-8").read() if c["doc"].endswith((".txt", ".md")) else None
        assert text is None or text[c["start"]:c["end"]] == c["quote"]


def test_cli_ask_follow_up_with_history(cli_dirs, capsys):
    corpus, index = cli_dirs
    code, out, _ = run_cli(capsys, "ask", "Who chaired it?", "--history", "What happened in the opening session?",
                           "--json", "--corpus", str(corpus), "--index", str(index))
    assert code == 0
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["question"] == "Who chaired it?"
    assert answer["citations"] and answer["citations"][0]["doc"] == "structured-readout.txt"


@pytest.mark.parametrize("argv, says", [
    (["build", "--corpus", "{tmp}/no-such-folder"], "no-such-folder"),
    (["ask", "Anything?", "--no-build", "--corpus", "{corpus}"], "python -m app build"),
    (["status", "--corpus", "{corpus}"], "python -m app build"),
])
def test_cli_errors_are_one_line_without_traceback(cli_dirs, capsys, argv, says):
    corpus, index = cli_dirs
    argv = [a.format(tmp=corpus.parent, corpus=corpus) for a in argv] + ["--index", str(index)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and says in err
    assert "Traceback" not in err + out


# --- the real model ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_model_build_and_ask(tmp_path, real_embedder):
    qa = QA(make_settings(tmp_path, DATA / "corpus"), real_embedder)
    report = qa.build()
    assert report.added == 5 and report.embedded_chunks == report.chunks
    assert qa.store().manifest["model"] == {"id": real_embedder.model_id, "dimension": 384, "normalized": True}
    answer = qa.ask("When was the light automated?")
    assert not answer.abstained
    first = answer.citations[0]
    assert first.doc == "lighthouse-notes.txt" and "1962" in first.quote
    text = open(qa.settings.corpus / first.doc, encoding="utf-8").read()
    assert text[first.start:first.end] == first.quote
    pdf = qa.ask("When does the dredging of the inner basin start?")
    assert pdf.citations[0].doc == "harbour-report.pdf" and "September" in pdf.citations[0].quote
