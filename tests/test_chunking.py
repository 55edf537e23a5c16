"""Passages and sentences: offsets that always slice the document back to the stored text, sentences that do
not break on abbreviations or list markers, and heading paths a reader can follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.chunking import blocks, chunk_document, split_sentences
from app.documents import load_corpus, load_document
from app.records import Document
from app.settings import ChunkingSettings

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
MAX_BYTES = 20_000_000
SETTINGS = [ChunkingSettings(), ChunkingSettings(max_chars=150, min_chars=40), ChunkingSettings(fixed_chars=100)]

STRUCTURED_SENTENCES = [
    "The meeting opened at 9 a.m. on Monday.",
    "Ms. Okafor of the U.S. delegation chaired the first session.",
    "The chair thanked the host city for its hospitality.",
    "The ministers agreed on two points:",
    "The fisheries working group will report every six months.",
    "The ports working group will publish its first survey in May.",
    "The ministers welcomed the new search and rescue hotline.",
    "It will be staffed around the clock from January.",
    "The ministers noted that the sea wall fund reached 40 million dollars.",
    "Dr. Lindqvist presented the coastal flooding map.",
    "The ministers discussed the situation on the Korean Peninsula at 3 p.m. on Tuesday.",
    "Ms. Park said the U.S. and the Republic of Korea remain in close contact.",
    "They called for the full denuclearization of the Korean Peninsula.",
    "The next meeting will be held in Lisbon in the spring.",
    "The session closed at 5 p.m. after a short statement by the chair.",
]


def doc_of(text: str, path: str = "sample.txt") -> Document:
    return Document(path, "Sample", text, "0" * 64)


@pytest.fixture(scope="module")
def corpus_docs() -> list[Document]:
    docs, _ = load_corpus(CORPUS, MAX_BYTES)
    return docs


@pytest.fixture(scope="module")
def structured() -> Document:
    return load_document(CORPUS / "structured-readout.txt", CORPUS, MAX_BYTES)


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "small", "fixed"])
def test_every_chunk_and_sentence_slices_back_to_its_text(corpus_docs, settings):
    for doc in corpus_docs:
        chunks = chunk_document(doc, settings)
        assert chunks, doc.path
        for chunk in chunks:
            assert chunk.doc == doc.path
            assert doc.text[chunk.start:chunk.end] == chunk.text
            previous_end = chunk.start
            for start, end in chunk.sentences:
                assert chunk.start <= start < end <= chunk.end
                assert start >= previous_end  # in order, not overlapping
                assert doc.text[start:end].strip() == doc.text[start:end]
                previous_end = end


def test_passages_are_in_document_order_and_do_not_overlap(corpus_docs):
    for doc in corpus_docs:
        chunks = chunk_document(doc, ChunkingSettings(max_chars=150, min_chars=40))
        for before, after in zip(chunks, chunks[1:]):
            assert before.end <= after.start


def test_structured_sentences_survive_abbreviations_and_markers(structured):
    sentences = [structured.text[s:e] for c in chunk_document(structured, ChunkingSettings()) for s, e in c.sentences]
    assert sentences[1:] == STRUCTURED_SENTENCES  # after the disclaimer: the title line is not a sentence


def test_no_sentence_is_lost_when_passages_are_small(structured):
    chunks = chunk_document(structured, ChunkingSettings(max_chars=150, min_chars=40))
    sentences = [structured.text[s:e] for c in chunks for s, e in c.sentences]
    assert sentences[1:] == STRUCTURED_SENTENCES
    assert all(c.end - c.start <= 150 * 1.3 for c in chunks)


def test_heading_paths_follow_numbered_and_roman_sections(structured):
    chunks = chunk_document(structured, ChunkingSettings())
    section_of = {structured.text[s:e]: c.section for c in chunks for s, e in c.sentences}
    assert section_of["Ms. Park said the U.S. and the Republic of Korea remain in close contact."] == \
        "2. Regional and International Issues > iii. North Korea"
    assert section_of["Dr. Lindqvist presented the coastal flooding map."] == \
        "2. Regional and International Issues > ii. Climate Resilience"
    assert section_of["The ports working group will publish its first survey in May."] == "1. Opening Session"
    assert section_of["The next meeting will be held in Lisbon in the spring."] == "3. Closing"  # sub-point popped
    headings = ("1. Opening Session", "iii. North Korea", "3. Closing")
    assert not any(text in headings for text in section_of)  # headings are paths, not quotes


def test_markdown_heading_paths(corpus_docs):
    doc = next(d for d in corpus_docs if d.path == "garden-guide.md")
    chunks = chunk_document(doc, ChunkingSettings())
    fee = next(c for c in chunks if "annual fee of 25 euros" in c.text)
    assert fee.section == "Community Garden Guide > Rules for plot holders"
    assert "title:" not in " ".join(c.text for c in chunks)  # front matter is not a passage


def test_html_headings_give_section_paths(corpus_docs):
    doc = next(d for d in corpus_docs if d.path == "museum-page.html")
    chunks = chunk_document(doc, ChunkingSettings())
    tours = next(c for c in chunks if "Guided tours" in c.text)
    assert tours.section is not None and tours.section.endswith("Collections")
    assert "Collections" not in [doc.text[s:e] for c in chunks for s, e in c.sentences]


@pytest.mark.parametrize("text, expected", [
    ("The talks began at 3 p.m. on Monday. Ms. Okafor of the U.S. Navy spoke first. The U.S. sent a ship.",
     ["The talks began at 3 p.m. on Monday.", "Ms. Okafor of the U.S. Navy spoke first.", "The U.S. sent a ship."]),
    ("They agreed that (1) the fund grows and (2) the hotline opens. Dr. Lee agreed.",
     ["They agreed that (1) the fund grows and (2) the hotline opens.", "Dr. Lee agreed."]),
    ("The plan has three parts:\ni. Ministers meet twice a year.\nii. Officials meet monthly.\n"
     "iii. Experts meet weekly.",
     ["The plan has three parts:", "Ministers meet twice a year.", "Officials meet monthly.", "Experts meet weekly."]),
    ("Two decisions:\n(1) The hotline opens in May.\n(2) The fund doubles. It is the largest ever.",
     ["Two decisions:", "The hotline opens in May.", "The fund doubles.", "It is the largest ever."]),
    ("Prices rose 4.5 percent in 2023. Wages did not!", ["Prices rose 4.5 percent in 2023.", "Wages did not!"]),
    ("Space Cooperation:** The United States will invest in SERVIR. It shares data.",
     ["Space Cooperation:", "The United States will invest in SERVIR.", "It shares data."]),
    ("Abstract: BACKGROUND: Transmission is the main cause. METHODS: We studied 200 mothers.",
     ["Abstract:", "BACKGROUND:", "Transmission is the main cause.", "METHODS:", "We studied 200 mothers."]),
    ("Somali dialects are divided into three main groups: Northern, Benaadir and Maay.",
     ["Somali dialects are divided into three main groups: Northern, Benaadir and Maay."]),
    ("The Normans (Norman: Nourmands; French: Normands) were a people.",
     ["The Normans (Norman: Nourmands; French: Normands) were a people."]),
])
def test_split_sentences(text, expected):
    assert [text[s:e] for s, e in split_sentences(text)] == expected


def test_a_line_of_zero_width_space_from_a_web_page_separates_paragraphs_like_a_blank_one(tmp_path):
    from app.documents import load_document

    (tmp_path / "fact-sheet.md").write_text(
        "Training: the Laboratory will train staff in disaster planning and other areas\nof work.  \n\u200b  \n"
        "Disability Rights:\xa0The United States will launch a dialogue on disability.\n", encoding="utf-8")
    doc = load_document(tmp_path / "fact-sheet.md", tmp_path, 10**6)
    sentences = [doc.text[s:e] for c in chunk_document(doc, ChunkingSettings()) for s, e in c.sentences]
    assert sentences == ["Training: the Laboratory will train staff in disaster planning and other areas\nof work.",
                         "Disability Rights:", "The United States will launch a dialogue on disability."]


def test_split_sentences_within_a_range_keeps_absolute_offsets():
    text = "Header line.\n\nFirst sentence here. Second sentence here.\n"
    start = text.index("First")
    spans = split_sentences(text, start, len(text))
    assert [text[s:e] for s, e in spans] == ["First sentence here.", "Second sentence here."]
    assert spans[0][0] == start


def test_long_paragraph_is_cut_between_sentences():
    sentence = "The committee reviewed the harbour budget line by line. "
    text = sentence * 40
    chunks = chunk_document(doc_of(text), ChunkingSettings(max_chars=300, min_chars=50))
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text.startswith("The committee") and chunk.text.endswith("line by line.")
        assert chunk.end - chunk.start <= 300 * 1.3


def test_fixed_windows_are_the_baseline_size():
    text = "word " * 200
    chunks = chunk_document(doc_of(text), ChunkingSettings(fixed_chars=100))
    assert all(c.end - c.start <= 100 for c in chunks)
    assert all(c.section is None for c in chunks)


QUESTIONS = [
    "When was the lighthouse on Gull Island built?",
    "Who moved to the mainland when the light was automated?",
    "When may hoses be used in the community garden?",
    "How much is the annual fee for a plot holder?",
    "What did Ms. Park say about the U.S. and the Republic of Korea?",
    "When will the ports working group publish its first survey?",
]


def test_quotes_from_ask_are_exact_slices_of_the_file(fake_qa):
    """The contract's invariant, checked the way a user would: open the file and slice it."""
    quoted = 0
    for question in QUESTIONS:
        answer = fake_qa.ask(question)
        for citation in answer.citations:
            path = fake_qa.settings.corpus / citation.doc
            if path.suffix in (".txt", ".md"):
                text = open(path, encoding="utf-8").read()
                assert text[citation.start:citation.end] == citation.quote
                quoted += 1
    assert quoted >= len(QUESTIONS)


def test_answer_cites_the_section_path(fake_qa):
    answer = fake_qa.ask("What did Ms. Park say about the U.S. and the Republic of Korea?")
    first = answer.citations[0]
    assert first.doc == "structured-readout.txt"
    assert "Ms. Park said the U.S. and the Republic of Korea remain in close contact." in first.quote
    assert first.section == "2. Regional and International Issues > iii. North Korea"


# --- the readout: its structure, run-together sub-points and page furniture ----------------------------

READOUT = Path(__file__).resolve().parent.parent / "corpus" / "28th-asean-japan-summit.txt"


@pytest.fixture(scope="module")
def readout() -> tuple[Document, dict[str, str | None]]:
    doc = load_document(READOUT, READOUT.parent, MAX_BYTES)
    chunks = chunk_document(doc, ChunkingSettings())
    return doc, {doc.text[s:e]: c.section for c in chunks for s, e in c.sentences}


def section_of(sections: dict[str, str | None], start: str) -> str | None:
    found = [section for sentence, section in sections.items() if sentence.startswith(start)]
    assert len(found) == 1, f"{len(found)} sentences start with {start!r}"
    return found[0]


def test_readout_sections_follow_its_numbering(readout):
    _, sections = readout
    assert section_of(sections, "The meeting began with an opening remark by Dato' Seri Anwar") == \
        "1. ASEAN-Japan cooperation"
    assert section_of(sections, "Prime Minister Takaichi then shared") == "1. ASEAN-Japan cooperation > (2)"
    assert section_of(sections, "Japan has been supporting the strengthening") == \
        "1. ASEAN-Japan cooperation > (2) > i. “Partners for Peace and Stability”"
    assert section_of(sections, "They also praised Japan's cooperation") == "1. ASEAN-Japan cooperation > (3)"
    assert section_of(sections, "Attempts to unilaterally change") == \
        "2. Regional and International Issues > i. General principles"
    assert section_of(sections, "Peace and stability across the Taiwan Strait") == \
        "2. Regional and International Issues > ii. The East China Sea, the South China Sea, Taiwan"
    assert section_of(sections, "North Korea conducted the ballistic missile launch") == \
        "2. Regional and International Issues > iii. North Korea"
    assert section_of(sections, "Japan is deeply concerned about the situation in Myanmar") == \
        "2. Regional and International Issues > iv. Situation in Myanmar"
    assert section_of(sections, "Peace and stability in the Middle East") == \
        "2. Regional and International Issues > v. Middle East Situation"
    assert section_of(sections, "Russia’s aggression against Ukraine constitutes") == \
        "2. Regional and International Issues > vi. Russia's aggression against Ukraine"
    assert section_of(sections, "In closing, Prime Minister Takaichi") == "3. Closing Remarks"
    # the items of a list introduced by a colon stay in their section
    assert section_of(sections, "I would like to congratulate Prime Minister Gusmao") == "1. ASEAN-Japan cooperation"


def test_run_together_sub_points_are_cut_apart_and_headings_never_glued_to_quotes(readout):
    _, sections = readout
    assert "Attempts to unilaterally change the status quo by force or coercion must not be tolerated anywhere " \
           "in the world." in sections
    assert "Peace and stability across the Taiwan Strait are important issues, which directly impact regional " \
           "security." in sections
    assert "We strongly urge the Myanmar military to immediately stop the violence and start political dialogue." \
        in sections
    for sentence in sections:
        assert not sentence.startswith(("North Korea North Korea", "Russia's aggression against Ukraine Russia"))
        assert not sentence.endswith(("ii.", "iii", "v.", "iv.")), sentence
        assert "\n" not in sentence, sentence


def test_page_furniture_is_never_a_sentence(readout):
    doc, sections = readout
    assert doc.title == "The 28th ASEAN Japan Summit"
    for sentence in sections:
        for furniture in ("Japan-ASEAN Relations", "(Photo:", "(Reference)", "English (PDF)", "Japanese (PDF)"):
            assert furniture not in sentence, sentence
    assert all(s[0] not in "(/" for s in sections)


def test_lost_line_breaks_before_sub_points_are_a_generic_rule():
    text = ("Intro\n\nThe rules:\ni. Scope\nEvery member may vote. Proxies are not allowed.ii. Terms of office\n"
            "Terms last two years.iii. Amendments\nThe board may amend these rules.\n")
    chunks = chunk_document(doc_of(text), ChunkingSettings())
    sections = {text[s:e]: c.section for c in chunks for s, e in c.sentences}
    assert sections["Proxies are not allowed."] == "i. Scope"
    assert sections["Terms last two years."] == "ii. Terms of office"
    assert sections["The board may amend these rules."] == "iii. Amendments"


def test_a_wikipedia_style_title_line_is_the_title_not_a_quote(tmp_path):
    from app.embedding import HashEmbedder
    from app.qa import QA
    from tests.conftest import make_settings

    corpus = Path(__file__).resolve().parent / "data" / "wiki"
    doc = load_document(corpus / "teenage-mutant-ninja-turtles.txt", corpus, MAX_BYTES)
    chunks = chunk_document(doc, ChunkingSettings())
    assert doc.title == "Teenage Mutant Ninja Turtles"
    assert "Teenage Mutant Ninja Turtles" not in [doc.text[s:e] for c in chunks for s, e in c.sentences]
    assert any(c.section == "Publication history" for c in chunks)
    qa = QA(make_settings(tmp_path, corpus), HashEmbedder(), reader=None)
    qa.build()
    answer = qa.ask("when did teenage mutant ninja turtles come out")
    assert answer.citations and answer.citations[0].quote != "Teenage Mutant Ninja Turtles"
    assert all(len(c.quote) > len("Teenage Mutant Ninja Turtles") for c in answer.citations)


def test_hard_wrapped_lines_run_on_into_one_sentence_and_titles_stay_titles():
    """Text wrapped at 72 columns (pandoc, e-mail): a line the width ended continues its sentence even when it
    ends in "Dr." or reads like a short title (as the next line may too); a real title above its paragraph
    stays a heading, and a line of spaces still ends a paragraph."""
    text = (
        "Regional Cooperation Fact Sheet\n\n"
        "The partners agreed a series of new measures on trade, health, energy and\n"
        "education, and they will review their progress at the next annual summit\n"
        "in the autumn. Officials from every member state attended the two sessions\n"
        "of the meeting, which was held in the capital over the course of two days.\n\n"
        "Science Cooperation\n"
        "The partners will share research on clean energy, health and farming and\n"
        "will open the results of the work to universities across the whole region.\n\n"
        "-   Launch a Regional Science and Technology Innovation Cooperation\n"
        "    Program (STIC) to support innovative projects and the digital economy.\n"
        "-   In June 2024, the Centre hosted the Secretary-General of the bloc, Dr.\n"
        "    Kao Kim Hourn, for his first working visit to the partner countries.\n\n"
        "The leaders reviewed progress on a new economic framework that brings\n"
        "concrete gains to all of its fourteen members and drives enduring and\n"
        "broad-based economic growth throughout the wider region of the\n"
        "Indo-Pacific. He also highlighted progress in implementing the\n"
        "Indo-Pacific Partnership for Maritime Domain Awareness, which helps the\n"
        "coastal states to monitor their waters.\n\n"
        "Two-way trade between the partners reached a record of over $360 billion in\n"
        "2020.\xa0  \n  \n"
        "Their relations are anchored in the special friendship of their peoples.\n")
    items = [" ".join(text[b.start:b.end].split()) for b in blocks(text)]  # where a passage may be cut
    assert "- Launch a Regional Science and Technology Innovation Cooperation Program (STIC) to support " \
           "innovative projects and the digital economy." in items
    assert "- In June 2024, the Centre hosted the Secretary-General of the bloc, Dr. Kao Kim Hourn, for his " \
           "first working visit to the partner countries." in items
    assert any(item.startswith("The leaders reviewed") and item.endswith("monitor their waters.") for item in items)
    chunks = chunk_document(doc_of(text), ChunkingSettings())
    sentences = {" ".join(text[s:e].split()): c.section for c in chunks for s, e in c.sentences}
    assert sentences["Launch a Regional Science and Technology Innovation Cooperation Program (STIC) to support "
                     "innovative projects and the digital economy."] == "Science Cooperation"
    assert ("In June 2024, the Centre hosted the Secretary-General of the bloc, Dr. Kao Kim Hourn, for his first "
            "working visit to the partner countries.") in sentences
    assert ("He also highlighted progress in implementing the Indo-Pacific Partnership for Maritime Domain "
            "Awareness, which helps the coastal states to monitor their waters.") in sentences  # two short lines
    assert "Two-way trade between the partners reached a record of over $360 billion in 2020." in sentences
    assert "Their relations are anchored in the special friendship of their peoples." in sentences
    assert "Science Cooperation" not in sentences and "Regional Cooperation Fact Sheet" not in sentences
