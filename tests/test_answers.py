"""What a user checks of an answer: the quote is verbatim and short, unrelated questions and figures the
documents never give are declined, follow-ups are answered in context, and acronyms defined in the corpus work
both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import acronyms
from app.embedding import HashEmbedder
from app.qa import QA, is_follow_up
from app.scoring import answers_the_type, token_match
from app.settings import Settings

PROGRAMS = {
    "attachment.md": (
        "# Youth Exchange Programs\n\n"
        "## The Attachment Program\n\n"
        "The Attachment Program places young civil servants from member states in partner ministries for six "
        "months. Participants rotate through three departments and write a short policy paper.\n\n"
        "The program is funded by the Regional Cooperation Fund, which covers travel and housing. "
        "About forty officials take part each year.\n"
    ),
    "scholarships.md": (
        "# Scholarships\n\n"
        "## The Harbour Scholarship\n\n"
        "The Harbour Scholarship supports marine engineering students for two years of study abroad. "
        "The scholarship is funded by a consortium of shipping companies.\n\n"
        "## Free and Open Seas Initiative\n\n"
        "Members back a Free and Open Seas Initiative (FOSI) that keeps shipping lanes open to all. "
        "The FOSI secretariat publishes an annual report on navigation incidents.\n"
    ),
    "weather.md": (
        "# Monsoon Season\n\n"
        "The monsoon season brings heavy rain between June and September. "
        "Farmers plant rice at the start of the rains.\n"
    ),
}


def text_of(corpus: Path, doc: str) -> str:
    return open(corpus / doc, encoding="utf-8").read()


@pytest.fixture(scope="module")
def programs(tmp_path_factory, real_embedder) -> QA:
    root = tmp_path_factory.mktemp("programs")
    (root / "corpus").mkdir()
    for name, text in PROGRAMS.items():
        (root / "corpus" / name).write_text(text, encoding="utf-8")
    qa = QA(Settings(corpus=root / "corpus", index=root / "index"), real_embedder)
    qa.build()
    return qa


def test_every_quote_is_verbatim_and_the_first_is_a_sentence_not_a_passage(seed_qa):
    for question in ("Who chaired the meeting?",
                     "How long did the summit last?",
                     "Who is the president of France?"):
        answer = seed_qa.ask(question)
        assert answer.citations
        for c in answer.citations:
            assert text_of(seed_qa.settings.corpus, c.doc)[c.start:c.end] == c.quote
        assert len(answer.citations[0].quote) < 600  # a sentence or two, not a 1,000-character chunk


def test_the_answer_quotes_the_sentence_that_answers(seed_qa):
    answer = seed_qa.ask("Who chaired the meeting?")
    assert not answer.abstained
    first = answer.citations[0]
    assert "Anwar" in first.quote and "chairman of the meeting" in first.quote
    assert first.section == "1. ASEAN-Japan cooperation"
    assert first.title == "The 28th ASEAN Japan Summit"
    assert answer.answer.startswith("“") and "[1]" in answer.answer


@pytest.mark.parametrize("question", ["What is the best recipe for banana bread?",
                                      "Who won the 1998 football World Cup?"])
def test_an_unrelated_question_is_declined_with_related_passages_marked(seed_qa, question):
    answer = seed_qa.ask(question)
    assert answer.abstained
    assert answer.answer.startswith("The documents don't say")
    if answer.citations:
        assert "Related passages (not an answer)" in answer.answer


def test_a_follow_up_is_answered_from_the_conversation(programs):
    """Both programs are "funded by" someone: only the conversation says which one "it" is."""
    first = programs.ask("Tell me about the Attachment Program.")
    assert first.citations[0].doc == "attachment.md"
    follow = programs.ask("Who funds it?", history=["Tell me about the Attachment Program."])
    assert not follow.abstained
    assert "Regional Cooperation Fund" in follow.citations[0].quote
    other = programs.ask("Who funds it?", history=["What is the Harbour Scholarship?"])
    assert not other.abstained
    assert "consortium of shipping companies" in other.citations[0].quote


def test_follow_up_detection():
    assert is_follow_up("Who funds it?")
    assert is_follow_up("And the budget?")
    assert not is_follow_up("Who funds the Harbour Scholarship program abroad?")


def test_acronyms_are_learned_from_the_corpus_and_expand_both_ways():
    learned = acronyms.learn(PROGRAMS.values())
    assert learned == {"FOSI": "Free and Open Seas Initiative"}
    assert "Free and Open Seas Initiative" in acronyms.expand("What does FOSI publish?", learned)
    assert "FOSI" in acronyms.expand("What does the free and open seas initiative publish?", learned)


def test_a_query_typed_in_lower_case_names_acronyms_in_lower_case():
    learned = {"FOSI": "Free and Open Seas Initiative", "OR": "operating room"}
    assert acronyms.expand("fosi publications", learned) == "fosi publications (Free and Open Seas Initiative)"
    with_or = "what is fosi or the like"  # "or" is no acronym here: two letters match only as typed
    assert acronyms.expand(with_or, learned) == f"{with_or} (Free and Open Seas Initiative)"
    assert acronyms.expand("What does fosi publish?", learned) == "What does fosi publish?"  # capitals typed: as typed


def test_an_acronym_question_finds_text_that_uses_the_long_form(tmp_path):
    """With a bag-of-words fake there is no semantic help: only the learned expansion can match."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text(
        "# Notes\n\nThe Coastal Weather Service (CWS) was founded in 1950.\n\n"
        "Gardens need water in summer and shade in the afternoon.\n", encoding="utf-8")
    (corpus / "b.md").write_text(
        "# Budget\n\nThe Coastal Weather Service receives twelve million dollars a year from the ministry.\n",
        encoding="utf-8")
    (corpus / "c.md").write_text(
        "# Budget\n\nThe Harbour Pilot Office receives eight million dollars a year from the ministry.\n",
        encoding="utf-8")
    qa = QA(Settings(corpus=corpus, index=tmp_path / "index"), HashEmbedder())
    qa.build()
    answer = qa.ask("How many dollars does CWS receive each year?")
    assert "twelve million dollars" in answer.citations[0].quote  # b.md and c.md differ only by the long form


def test_a_figure_the_documents_never_give_is_declined_and_one_they_give_is_quoted(programs):
    """The fund is named, but no amount: quoting the sentence that names it would not answer "how much"."""
    missing = programs.ask("How much money does the Regional Cooperation Fund give the Attachment Program?")
    assert missing.abstained
    given = programs.ask("How many officials take part in the Attachment Program each year?")
    assert not given.abstained
    assert "About forty officials" in given.citations[0].quote


def test_token_match_is_a_soft_word_overlap(real_embedder):
    """Near forms ("funds"/"funded", "Normans"/"Norman") count; unrelated sentences score near zero."""
    question = real_embedder.word_vectors(["Who funds the Normans?"])[0]
    related, unrelated, same = real_embedder.word_vectors(
        ["The program is funded by the Norman fund.", "The monsoon season brings heavy rain.", "Who funds the Normans?"])
    scores = token_match(question, [related, unrelated, same, np.zeros((0, real_embedder.dimension), np.float32)])
    assert scores[2] == pytest.approx(1.0, abs=1e-5)
    assert scores[0] > 0.5 > 0.2 > scores[1]
    assert scores[3] == 0.0  # a sentence with no content words


def test_the_fake_embedder_matches_only_the_same_words():
    fake = HashEmbedder()
    question, text = fake.word_vectors(["Who funds the garden?", "The garden fee funds seeds."])
    assert token_match(question, [text])[0] == pytest.approx(1.0)  # "funds" and "garden" both occur
    other = fake.word_vectors(["Rain falls in June."])[0]
    assert token_match(question, [other])[0] < 0.5


@pytest.mark.parametrize("question, sentence, answers", [
    ("How many officials take part?", "About forty officials take part each year.", True),
    ("How much did it invest?", "It invested $3.5 million.", True),
    ("How many people attended?", "In August 2024, the Center hosted an ASEAN Day celebration.", False),  # a year
    ("How much funding did the Fund commit?", "The program is funded by the Fund.", False),
    ("How many leaders attended the 28th Summit?", "The 28th Summit was held in Kuala Lumpur.", False),  # asked
    ("How many leaders attended the 28th Summit?", "Ten leaders attended the 28th Summit.", True),
    ("What date was the 2025 forum held?", "The 2025 forum was held in Tokyo.", False),  # the year it asks about
    ("What date was the 2025 forum held?", "The 2025 forum was held on 3 May.", True),
    ("In what year was it founded?", "It was founded in 1967.", True),
    ("Which month does the rain start?", "The rain starts in June.", True),
    ("Who funds the program?", "The program is funded by the Fund.", True),  # no figure asked for, a name given
    ("Who chaired the meeting?", "The overview of the meeting is as follows.", False),  # names no one
    ("who opened the meeting", "The meeting began with a remark by the chairman, Dato' Seri Anwar.", True),
    ("Who funds it?", "The scholarship is funded by a consortium of shipping companies.", True),  # an agent
])
def test_a_question_for_a_figure_or_a_person_needs_one_in_the_sentence(question, sentence, answers):
    assert answers_the_type(question, sentence) is answers


FERRY = ("The ferry leaves the north pier every morning at seven o'clock sharp. "
         "Tickets are sold at the kiosk beside the harbour master's office. "
         "The crossing to the island takes about forty minutes in calm weather. "
         "Bicycles travel free of charge on the lower deck of the ferry.\n")


def ferry(tmp_path: Path):
    """The ferry text indexed alone (fake embedder, no reader): the QA, its store and the one passage's hit."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "ferry.txt").write_text(FERRY, encoding="utf-8")
    qa = QA(Settings(corpus=tmp_path / "corpus", index=tmp_path / "index"), HashEmbedder(), reader=None)
    qa.build()
    return qa, qa.store(), qa.search("When does the ferry leave?").hits[0]


def test_the_runner_up_next_to_the_best_sentence_is_quoted_with_it_when_nearly_as_likely(tmp_path):
    from app.answer import quote_span, select_quotes
    from app.scoring import Candidate

    qa, store, hit = ferry(tmp_path)
    sentences = store.chunks[hit.row].sentences
    assert len(sentences) == 4

    def cand(index: int, score: float) -> Candidate:
        return Candidate(score, 0, hit, index)

    def first(*candidates: Candidate) -> tuple[int, int]:
        citation = select_quotes(store, list(candidates), qa.settings.answer)[0]
        return citation.start, citation.end

    alone = quote_span(store, cand(1, 2.0))
    assert alone == sentences[1]
    assert first(cand(1, 2.0), cand(2, 1.8), cand(0, 0.0)) == (sentences[1][0], sentences[2][1])  # the next one
    assert first(cand(2, 2.0), cand(1, 1.8)) == (sentences[1][0], sentences[2][1])  # the one before
    assert first(cand(1, 2.0), cand(2, 0.5)) == alone  # not nearly as likely
    assert first(cand(1, 2.0), cand(3, 1.9)) == alone  # not next to it
    quotes = [c.quote for c in select_quotes(store, [cand(1, 2.0), cand(2, 1.9), cand(3, 1.8)], qa.settings.answer)]
    assert len(quotes) == 2 and "forty minutes" in quotes[0] and "Bicycles" in quotes[1]  # quoted once, not again


def test_the_neighbour_holding_the_passage_readers_best_answer_joins_the_first_quote_and_is_marked(tmp_path):
    from app.answer import select_quotes
    from app.scoring import Candidate

    qa, store, hit = ferry(tmp_path)
    sentences = store.chunks[hit.row].sentences
    own = (sentences[1][0], sentences[1][0] + len("Tickets"))

    def first(reader_best: int, phrase: str) -> tuple[str, tuple[int, int] | None]:
        at = FERRY.index(phrase)
        best = Candidate(2.0, 0, hit, 1, span=own, passage_best=(reader_best, (at, at + len(phrase))))
        citation = select_quotes(store, [best, Candidate(0.0, 0, hit, 3)], qa.settings.answer)[0]
        return citation.quote, citation.answer

    quote, answer = first(2, "forty minutes")  # the reader's best answer in the next sentence: joined, marked
    assert quote == FERRY[sentences[1][0]:sentences[2][1]] and FERRY[slice(*answer)] == "forty minutes"
    quote, answer = first(3, "free of charge")  # two sentences on: the best sentence alone, its own mark
    assert quote == FERRY[slice(*sentences[1])] and answer == own


def test_a_supporting_quote_never_stops_at_a_colon(tmp_path):
    """A run-in label ("Space Cooperation:") is quoted with its sentence, and "... as follows:" whose list its
    passage does not hold is no supporting quote at all."""
    from app.answer import select_quotes
    from app.scoring import Candidate

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "fact-sheet.md").write_text(
        "The partners met in Jakarta in May to review the work of the past year.\n\n"
        "They agreed on a joint plan for the coming year and a budget to match it.\n\n"
        "Space Cooperation: The United States will invest in the SERVIR satellite initiative.\n\n"
        "The ministers summarised the main points of their discussion as follows:\n", encoding="utf-8")
    qa = QA(Settings(corpus=tmp_path / "corpus", index=tmp_path / "index"), HashEmbedder(), reader=None)
    qa.build()
    store = qa.store()
    hit = qa.search("Who will invest in SERVIR?").hits[0]
    texts = [store.chunks[hit.row].sentence(i) for i in range(len(store.chunks[hit.row].sentences))]
    assert texts[2:4] == ["Space Cooperation:", "The United States will invest in the SERVIR satellite initiative."]

    ranked = [Candidate(2.0, 0, hit, 0), Candidate(1.9, 0, hit, 2), Candidate(1.8, 0, hit, 4)]
    quotes = [c.quote for c in select_quotes(store, ranked, qa.settings.answer)]
    assert quotes == [texts[0], "Space Cooperation: The United States will invest in the SERVIR satellite initiative."]
