"""Bad files in the corpus never stop a build: every good file is indexed, and the build report says what
happened to every file, with a reason a person can act on for each one left out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app.documents
from app.build import build
from app.embedding import HashEmbedder
from app.qa import QA
from app.settings import Settings
from app.status import index_status

DATA = Path(__file__).resolve().parent / "data"
PDF = DATA / "corpus" / "harbour-report.pdf"
GOOD = "The ferry leaves the harbour at noon every day.\n"
SECRET = "The vault combination is written under the lighthouse stairs.\n"
DEPTH = 30


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def messy(tmp_path) -> Settings:
    """A corpus with one of every kind of trouble next to good files; files over 4 kB count as too large."""
    corpus = tmp_path / "corpus"
    write(corpus / "good.txt", GOOD)
    write(corpus / "résumé notes.md", "# Notes\n\nThe museum café serves leek soup on Fridays.\n")
    write(corpus / "binary.txt", bytes(range(256)) * 8)
    write(corpus / "latin1.txt", "Le café près du port sert une soupe de poireaux à midi.\n".encode("latin-1"))
    write(corpus / "empty.txt", b"")
    write(corpus / "blank.md", "\n   \n\t\n")
    write(corpus / "broken.pdf", PDF.read_bytes()[: PDF.stat().st_size // 2])
    write(corpus / "report.pdf", PDF.read_bytes())
    write(corpus / "huge.txt", "The huge file talks about pelicans. " * 200)
    deep = corpus.joinpath(*[f"level{i:02d}" for i in range(DEPTH)])
    write(deep / "deep.md", "# Deep\n\nThe deepest folder holds the spare lantern wicks.\n")
    outside = write(tmp_path / "outside" / "secret.txt", SECRET)
    os.symlink(outside, corpus / "link-to-secret.txt")
    os.symlink(outside.parent, corpus / "linked-folder")
    return Settings(corpus=corpus, index=tmp_path / "index", max_file_mb=0.004)


def statuses(report) -> dict[str, dict]:
    files = report.to_json()["files"]
    by_path = {f["path"]: f for f in files}
    assert len(by_path) == len(files), "a file is reported twice"
    return by_path


DEEP_PATH = "/".join(f"level{i:02d}" for i in range(DEPTH)) + "/deep.md"
EXPECTED = {
    "good.txt": ("added", None),
    "résumé notes.md": ("added", None),
    "latin1.txt": ("added", None),
    "report.pdf": ("added", None),
    DEEP_PATH: ("added", None),
    "binary.txt": ("skipped", "binary"),
    "empty.txt": ("skipped", "empty"),
    "blank.md": ("skipped", "empty"),
    "broken.pdf": ("skipped", "PDF"),
    "huge.txt": ("skipped", "VERBATIM_MAX_FILE_MB"),
    "link-to-secret.txt": ("skipped", "symbolic link"),
    "linked-folder": ("skipped", "symbolic link"),
}


def test_build_indexes_every_good_file_and_explains_every_other(messy):
    report = build(messy, HashEmbedder())
    files = statuses(report)
    assert set(files) == set(EXPECTED)
    for path, (status, reason) in EXPECTED.items():
        assert files[path]["status"] == status, path
        if reason:
            assert reason in files[path]["reason"], (path, files[path]["reason"])
    assert (report.added, report.skipped) == (5, 7)
    json_report = report.to_json()
    assert (json_report["added"], json_report["skipped"]) == (5, 7)


def test_good_files_answer_and_the_outside_file_is_never_read(messy):
    qa = QA(messy, HashEmbedder())
    qa.build()
    indexed = " ".join(c.text for c in qa.store().chunks)
    assert "vault combination" not in indexed and "pelicans" not in indexed
    latin = qa.ask("Where does the café près du port serve soupe de poireaux?")
    assert latin.citations[0].doc == "latin1.txt"
    assert "soupe de poireaux à midi" in latin.citations[0].quote
    assert open(messy.corpus / "latin1.txt", encoding="latin-1").read()[
        latin.citations[0].start:latin.citations[0].end] == latin.citations[0].quote
    deep = qa.ask("Which folder holds the spare lantern wicks?")
    assert deep.citations[0].doc == DEEP_PATH
    named = qa.ask("When does the museum café serve leek soup?")
    assert named.citations[0].doc == "résumé notes.md"


def test_skipped_files_are_kept_in_the_manifest_and_status(messy):
    build(messy, HashEmbedder())
    status = index_status(messy)
    assert status["stale"] is False  # skipped files are not changes
    assert {s["path"] for s in status["skipped"]} == {p for p, (s, _) in EXPECTED.items() if s == "skipped"}
    assert "7 file(s) skipped" in status["summary"]


def test_fixing_a_skipped_file_indexes_it_on_the_next_build(messy):
    build(messy, HashEmbedder())
    write(messy.corpus / "empty.txt", "The empty file now says the tide turns at four.\n")
    report = build(messy, HashEmbedder())
    assert statuses(report)["empty.txt"]["status"] == "added"
    assert report.embedded_chunks == 1 and report.skipped == 6


def test_fifty_megabyte_file_is_skipped_by_size_with_default_limit(tmp_path):
    corpus = tmp_path / "corpus"
    write(corpus / "good.txt", GOOD)
    with open(corpus / "big.txt", "wb") as out:
        block = b"A line of a very large log file that nobody meant to index.\n" * 16_384
        while out.tell() < 50_000_000:
            out.write(block)
    report = build(Settings(corpus=corpus, index=tmp_path / "index"), HashEmbedder())
    files = statuses(report)
    assert files["good.txt"]["status"] == "added"
    assert files["big.txt"]["status"] == "skipped" and "too large (50.1 MB > 20 MB" in files["big.txt"]["reason"]


def test_file_vanishing_during_the_build_is_reported(messy, monkeypatch):
    write(messy.corpus / "vanishing.txt", "This file is deleted after it was listed.\n")
    real = app.documents.corpus_files

    def list_then_delete(root):
        found = real(root)
        (messy.corpus / "vanishing.txt").unlink()
        return found

    monkeypatch.setattr(app.documents, "corpus_files", list_then_delete)
    report = build(messy, HashEmbedder())
    files = statuses(report)
    assert files["vanishing.txt"] == {"path": "vanishing.txt", "status": "skipped",
                                      "reason": "vanished during the build"}
    assert files["good.txt"]["status"] == "added"


def test_file_changing_during_the_build_is_indexed_as_read_and_picked_up_next_time(messy, monkeypatch):
    real = app.documents.load_document

    def read_then_edit(path, root, max_bytes):
        doc = real(path, root, max_bytes)
        if path.name == "good.txt":
            write(path, "The ferry now leaves the harbour at half past one.\n")
        return doc

    monkeypatch.setattr(app.documents, "load_document", read_then_edit)
    qa = QA(messy, HashEmbedder())
    qa.build()
    monkeypatch.setattr(app.documents, "load_document", real)
    before = qa.ask("When does the ferry leave the harbour?")
    assert before.citations[0].quote == GOOD.strip()  # the index's own copy vouches until the next build
    assert index_status(messy)["changes"]["changed"] == ["good.txt"]
    report = qa.build()
    assert statuses(report)["good.txt"]["status"] == "changed" and report.embedded_chunks == 1
    after = qa.ask("When does the ferry leave the harbour?")
    assert "half past one" in after.citations[0].quote
    text = open(messy.corpus / "good.txt", encoding="utf-8").read()
    assert text[after.citations[0].start:after.citations[0].end] == after.citations[0].quote


def test_corpus_of_only_bad_files_is_a_clear_error(tmp_path):
    from app.errors import CorpusError

    corpus = tmp_path / "corpus"
    write(corpus / "empty.txt", b"")
    write(corpus / "binary.txt", bytes(range(256)))
    with pytest.raises(CorpusError) as error:
        build(Settings(corpus=corpus, index=tmp_path / "index"), HashEmbedder())
    assert "no readable documents" in str(error.value) and "empty.txt" in str(error.value)


def test_copy_protected_pdf_does_not_stop_the_build(messy):
    write(messy.corpus / "restricted.pdf", (DATA / "faults" / "restricted-aes.pdf").read_bytes())
    report = build(messy, HashEmbedder())
    files = statuses(report)
    assert files["good.txt"]["status"] == "added"
    restricted = files["restricted.pdf"]
    assert restricted["status"] == "added" or "encrypt" in restricted["reason"].lower()


def test_file_name_that_is_not_utf8_does_not_stop_the_build(messy):
    with open(os.path.join(os.fsencode(messy.corpus), b"caf\xe9-menu.txt"), "wb") as out:
        out.write(b"The bakery opens at seven in the morning.\n")
    report = build(messy, HashEmbedder())
    files = statuses(report)
    assert files["good.txt"]["status"] == "added"
    odd = [f for f in files.values() if f["path"].startswith("caf")]
    assert len(odd) == 1 and (odd[0]["status"] == "added" or odd[0]["reason"])


def test_unsupported_format_is_reported(messy):
    write(messy.corpus / "minutes.docx", b"PK\x03\x04 not really a word file")
    files = statuses(build(messy, HashEmbedder()))
    assert files["minutes.docx"]["status"] == "skipped" and "format" in files["minutes.docx"]["reason"]
