"""Loading the corpus: each format becomes the text a user would read, with a title, pages for PDFs, and
hidden files left out. Uses the tiny real files in tests/data/corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader

from app.chunking import chunk_document
from app.documents import load_corpus, load_document
from app.settings import ChunkingSettings

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "corpus"
MAX_BYTES = 20_000_000


@pytest.fixture(scope="module")
def docs():
    loaded, skipped = load_corpus(CORPUS, MAX_BYTES)
    assert skipped == []
    return {d.path: d for d in loaded}


def test_every_format_is_loaded_and_hidden_files_are_not(docs):
    assert sorted(docs) == [
        "garden-guide.md", "harbour-report.pdf", "lighthouse-notes.txt", "museum-page.html", "structured-readout.txt",
    ]
    everything = " ".join(d.text for d in docs.values())
    assert "pelican" not in everything  # .draft.txt
    assert "albatross" not in everything  # .drafts/tides.txt


def test_text_file_is_read_exactly_as_open_reads_it(docs):
    doc = docs["lighthouse-notes.txt"]
    assert doc.text == open(CORPUS / "lighthouse-notes.txt", encoding="utf-8").read()
    assert doc.title == "Gull Island Lighthouse"
    assert doc.pages == ()


def test_markdown_title_comes_from_front_matter_and_text_is_the_file(docs):
    doc = docs["garden-guide.md"]
    assert doc.title == "Community Garden Guide"
    assert doc.text == open(CORPUS / "garden-guide.md", encoding="utf-8").read()


def test_html_gives_visible_text_and_page_title(docs):
    doc = docs["museum-page.html"]
    assert doc.title == "River Museum Opening Hours"
    assert "The River Museum is open from Tuesday to Sunday, 10 a.m. to 5 p.m." in doc.text
    assert "restored 18th-century barge & the tools" in doc.text  # entities decoded
    assert "The café on the terrace closes at 4 p.m." in doc.text
    assert "tracking" not in doc.text and "font-family" not in doc.text  # script and style dropped
    assert "<p>" not in doc.text


def test_pdf_pages_and_title(docs):
    doc = docs["harbour-report.pdf"]
    assert len(PdfReader(CORPUS / "harbour-report.pdf").pages) == 2
    assert doc.title == "Harbour Report"
    assert len(doc.pages) == 2
    first = doc.text.index("The eastern breakwater was repaired in March")
    second = doc.text.index("The dredging of the inner basin starts in September")
    assert doc.page_at(first) == 1
    assert doc.page_at(second) == 2
    assert doc.pages[0][1] <= doc.pages[1][0]
    assert "Dredging Plan" not in doc.text[slice(*doc.pages[0])]


def test_pdf_passages_carry_their_page_numbers(docs):
    doc = docs["harbour-report.pdf"]
    chunks = chunk_document(doc, ChunkingSettings(max_chars=120, min_chars=20))
    first = next(c for c in chunks if "eastern breakwater" in c.text)
    last = next(c for c in chunks if "fish market" in c.text)
    assert first.page == 1
    assert last.page == 2


def test_pdf_passage_never_spans_two_pages_with_default_settings(docs):
    doc = docs["harbour-report.pdf"]
    chunks = chunk_document(doc, ChunkingSettings())
    for chunk in chunks:
        assert doc.page_at(chunk.start) == doc.page_at(chunk.end - 1), chunk.text
    assert next(c for c in chunks if "fish market" in c.text).page == 2


def test_quote_from_the_second_page_is_cited_as_page_2(fake_qa):
    answer = fake_qa.ask("When does the dredging of the inner basin start?")
    first = answer.citations[0]
    assert first.doc == "harbour-report.pdf" and "starts in September" in first.quote
    assert first.page == 2


def test_sha256_is_of_the_file_bytes(docs):
    import hashlib

    for path, doc in docs.items():
        assert doc.sha256 == hashlib.sha256((CORPUS / path).read_bytes()).hexdigest()


def test_nested_paths_are_relative_and_slash_separated(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep.md").write_text("# Deep\n\nThe well is twelve metres deep.\n", encoding="utf-8")
    (tmp_path / "notes.rtf").write_text("not a supported format", encoding="utf-8")
    loaded, skipped = load_corpus(tmp_path, MAX_BYTES)
    assert [d.path for d in loaded] == ["a/b/deep.md"]
    assert loaded[0].title == "Deep"
    assert [(s.path, s.reason.split(" (")[0]) for s in skipped] == [("notes.rtf", "unsupported format")]


def test_windows_line_endings_read_as_open_reads_them(tmp_path):
    (tmp_path / "crlf.txt").write_bytes(b"First line.\r\nSecond line.\r\n")
    doc = load_document(tmp_path / "crlf.txt", tmp_path, MAX_BYTES)
    assert doc.text == open(tmp_path / "crlf.txt", encoding="utf-8").read() == "First line.\nSecond line.\n"
