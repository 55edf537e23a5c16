"""Adding documents from the page: only readable types within the size limit, under safe names inside the
corpus, never twice, never over another file; then an incremental build makes them answerable."""

from __future__ import annotations

from app.uploads import add_files, check, safe_name

MB = 1_000_000


def test_names_are_made_plain_and_kept_inside_the_folder():
    assert safe_name("../../Résumé of talks (final).PDF") == "Resume-of-talks-final.pdf"
    assert safe_name("C:\\Users\\me\\notes.txt") == "notes.txt"
    assert safe_name(".hidden.md") == "hidden.md"
    assert safe_name("会議.md") == "document.md"
    assert safe_name("a" * 300 + ".txt") == "a" * 80 + ".txt"


def test_types_sizes_and_contents_are_checked():
    assert check("report.docx", 10, b"PK", 20 * MB).startswith("not a supported type (.docx)")
    assert check("run.sh", 10, b"#!", 20 * MB).startswith("not a supported type")
    assert check("big.txt", 21 * MB, b"text", 20 * MB) == "too large (21.0 MB; the limit is 20 MB)"
    assert check("fake.pdf", 10, b"<html>", 20 * MB).startswith("not a PDF file")
    assert check("binary.txt", 10, b"\x7fELF\x00\x00", 20 * MB) == "binary data, not text"
    assert check("empty.md", 0, b"", 20 * MB) == "empty file"
    assert check("fine.pdf", 10, b"%PDF-1.7", 20 * MB) is None
    assert check("fine.html", 10, b"<html>", 20 * MB) is None


def test_files_are_added_under_unused_names_and_duplicates_are_not(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.md").write_text("# Old notes\n\nThe old notes.\n", encoding="utf-8")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    new = uploads / "notes.md"
    new.write_text("# New notes\n\nDifferent notes.\n", encoding="utf-8")
    same = uploads / "copy.md"
    same.write_bytes((corpus / "notes.md").read_bytes())
    bad = uploads / "tool.exe"
    bad.write_bytes(b"MZ")
    added = add_files(corpus, [("notes.md", new), ("copy.md", same), ("../tool.exe", bad)], 20 * MB)
    assert [(a.path, a.duplicate_of, a.reason is None) for a in added] == [
        ("notes-2.md", None, True), ("notes.md", "notes.md", True), (None, None, False)]
    assert (corpus / "notes.md").read_text(encoding="utf-8").startswith("# Old notes")  # never overwritten
    assert (corpus / "notes-2.md").read_bytes() == new.read_bytes()
    assert sorted(p.name for p in corpus.iterdir()) == ["notes-2.md", "notes.md"]  # no temporary left, nothing else


def test_an_added_document_is_answerable_after_the_incremental_build(fake_qa, tmp_path):
    upload = tmp_path / "Lighthouse log.txt"
    upload.write_text("The lighthouse keeper logged forty-two passing ships on the night of the storm.\n",
                      encoding="utf-8")
    before = fake_qa.store().manifest["counts"]["documents"]
    [added] = add_files(fake_qa.settings.corpus, [(upload.name, upload)], 20 * MB)
    report = fake_qa.build()
    assert added.path == "Lighthouse-log.txt" and report.added == 1 and report.unchanged == before
    answer = fake_qa.ask("How many passing ships did the lighthouse keeper log on the night of the storm?")
    assert "forty-two passing ships" in answer.citations[0].quote
