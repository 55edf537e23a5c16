"""The passage reader. Its training (stage 13, `python -m train.passage_reader`): its examples, its loss over a
question's passages together, and a tiny run that writes weights and a manifest and resumes to the same
weights. At run time: trained weights load offline without pickle and mark a span in each sentence, and in
`QA.ask` its marks move the sentence that answers to the first quote, with its span."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from app.embedding import HashEmbedder
from app.qa import QA
from app.reader import PassageReader, PassageReading, Reading, sentence_marks
from tests.conftest import DATA, make_settings, refuse_pickle, tiny_training

TINY_SQUAD = DATA / "squad-tiny.json"


def train(tmp_path: Path, name: str, *extra: str) -> Path:
    from train.passage_reader import main

    return tiny_training(main, tmp_path, name, "--data", str(TINY_SQUAD), "--steps", "4", "--questions-per-step",
                        "2", "--layers", "1", "--save-every", "1", "--dev-questions", "4", *extra)


def test_each_question_reads_its_own_paragraph_first_and_an_alike_one_without_its_answer(tmp_path):
    from train.examples import load_passage_examples

    def qa(qid, question, context, answer):
        return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}

    tower = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    visitors = "The Eiffel Tower has about seven million visitors a year, more than any other paid monument."
    again = "Its designer Gustave Eiffel presented the tower in 1889 to the public."
    data = {"data": [{"title": "Eiffel_Tower", "paragraphs": [
        {"context": tower, "qas": [qa("q1", "When was the Eiffel Tower completed?", tower, "1889")]},
        {"context": visitors, "qas": [qa("q2", "How many visitors does the Eiffel Tower have?", visitors,
                                         "seven million")]},
        {"context": again, "qas": []}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    train_set, dev = load_passage_examples(path, seed=1)
    examples = {ex.qid: ex for ex in train_set + dev}
    assert examples["q1"].passages == (tower, visitors)  # the paragraph that also says 1889 is not a negative
    assert examples["q2"].passages[0] == visitors and examples["q2"].passages[1] in (tower, again)
    assert visitors[slice(*examples["q2"].span)] == "seven million"


class Fixed(torch.nn.Module):
    """A network whose span logits are given: what a loss makes of them, with no training in between."""

    def __init__(self, span_logits):
        super().__init__()
        self.span_logits = span_logits

    def forward(self, ids, mask, types):
        return torch.zeros(len(ids)), self.span_logits[: len(ids), : ids.shape[1]]


def test_the_answer_is_one_softmax_over_all_of_a_questions_passages():
    from train.passage_reader import loss_of

    # two passages of four tokens; the answer is token 1 of the first
    ids = torch.ones(2, 4, dtype=torch.long)
    batch = (ids, torch.ones_like(ids), torch.ones_like(ids), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), [(1, 1)])
    right, wrong = torch.zeros(2, 4, 2), torch.zeros(2, 4, 2)
    right[0, 1] = 8.0  # the answer's token stands out
    wrong[1, 2] = 8.0  # the other passage's token stands out: wrong across passages, not within the first
    assert loss_of(Fixed(right), batch)[2] < 0.1 < loss_of(Fixed(wrong), batch)[2]


def test_a_question_no_passage_answers_is_trained_towards_the_cls_token_and_only_with_null():
    from train.passage_reader import loss_of

    ids = torch.ones(2, 4, dtype=torch.long)
    types = torch.ones_like(ids)
    types[:, 0] = 0  # [CLS] is of the question's segment
    batch = (ids, torch.ones_like(ids), types, torch.tensor([0.0, 0.0]), torch.tensor([0, 0]), [None])
    says_none, says_span = torch.zeros(2, 4, 2), torch.zeros(2, 4, 2)
    says_none[1, 0] = 8.0  # the second passage's [CLS]: "no answer here"
    says_span[0, 2] = 8.0  # a span of the first passage
    assert loss_of(Fixed(says_none), batch, null=True)[2] < 0.1 < loss_of(Fixed(says_span), batch, null=True)[2]
    answerable = batch[:3] + (torch.tensor([1.0, 0.0]), batch[4], [(1, 1)])
    span_at_1 = torch.zeros(2, 4, 2)
    span_at_1[0, 1], span_at_1[1, 0] = 8.0, 8.0  # the answer's token, and a rival [CLS]
    assert loss_of(Fixed(span_at_1), answerable, null=True)[2] > 0.5  # with null, [CLS] competes with the answer
    assert loss_of(Fixed(span_at_1), answerable)[2] < 0.1  # without it (stages 13-14), [CLS] is not a candidate


def test_questions_no_passage_answers_come_in_three_kinds_and_leave_dev_answerable_ones_as_they_were(tmp_path):
    from train.examples import load_passage_examples

    def qa(qid, question, context, answer):
        return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}

    articles = []
    for n, (city, river) in enumerate([("Paris", "Seine"), ("London", "Thames"), ("Vienna", "Danube"),
                                       ("Budapest", "Danube"), ("Cologne", "Rhine"), ("Prague", "Vltava")]):
        flows = f"The {river} flows through {city} from east to west."
        bridges = f"{city} has many bridges and a long history of trade on its river."
        articles.append({"title": city, "paragraphs": [
            {"context": flows, "qas": [qa(f"q{n}", f"Which river flows through {city}?", flows, river)]},
            {"context": bridges, "qas": []}]})
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": articles}), encoding="utf-8")
    plain_train, plain_dev = load_passage_examples(path, seed=1)
    train_set, dev = load_passage_examples(path, seed=1, no_answer_rate=1.0)
    assert [ex for ex in dev if ex.span is not None] == plain_dev
    assert len(train_set) == len(plain_train) and all(ex.span is None for ex in train_set + dev if ex not in plain_dev)
    by_id = {ex.qid: ex for ex in plain_train + plain_dev}
    kinds = set()
    for ex in (e for e in train_set + dev if e.span is None):
        own = by_id[ex.qid]
        answer = own.passages[0][slice(*own.span)]
        if ex.question != own.question:  # a name of the question swapped; its own paragraph kept
            kinds.add("swapped")
            new = set(ex.question.split()) - set(own.question.split())
            assert ex.passages == own.passages and new and not any(w.strip("?") in own.passages[0] for w in new)
        else:
            kinds.add("look-alike" if ex.passages[0] in own.passages else "elsewhere")
            assert own.passages[0] not in ex.passages and answer not in " ".join(ex.passages)
    assert kinds == {"look-alike", "elsewhere", "swapped"}


def test_keyword_rate_asks_training_questions_as_search_queries_against_the_same_passages():
    from train.examples import load_passage_examples, search_query

    plain_train, plain_dev = load_passage_examples(TINY_SQUAD, seed=2)
    train_set, dev = load_passage_examples(TINY_SQUAD, seed=2, keyword_rate=1.0)
    assert dev == plain_dev and len(train_set) == len(plain_train)
    for plain, keyworded in zip(plain_train, train_set):
        assert keyworded.question == search_query(plain.question) != plain.question
        assert (keyworded.passages, keyworded.span) == (plain.passages, plain.span)


def test_a_tiny_training_run_writes_weights_and_manifest_and_resumes_to_the_same_weights(tmp_path):
    from safetensors.numpy import load_file

    whole = train(tmp_path, "whole")
    manifest = json.loads((whole / "passage_reader.json").read_text(encoding="utf-8"))
    assert manifest["steps"] == 4 and manifest["seed"] == 25 and manifest["max_tokens"] == 256
    assert manifest["command"].startswith("python -m train.passage_reader") and len(manifest["data"]["sha256"]) == 64
    assert {"answer_passage_first", "span_f1"} <= set(manifest["dev"])
    weights = load_file(str(whole / "passage_reader.safetensors"))
    assert {"rank.weight", "span.weight"} <= set(weights) and not any(k.startswith("bert.embeddings.") for k in weights)

    train(tmp_path, "resumed", "--stop-at", "2")
    again = load_file(str(train(tmp_path, "resumed") / "passage_reader.safetensors"))  # continues from step 2
    for key in weights:
        assert np.allclose(again[key].astype(np.float32), weights[key].astype(np.float32), atol=2e-3), key


def test_a_stage_continued_from_passage_reader_weights_counts_their_steps_in_its_name(tmp_path):
    first = train(tmp_path, "first")
    assert json.loads((first / "passage_reader.json").read_text(encoding="utf-8"))["name"].endswith("-s4")
    second = train(tmp_path, "second", "--init", str(first / "passage_reader.safetensors"), "--seed", "26")
    manifest = json.loads((second / "passage_reader.json").read_text(encoding="utf-8"))
    assert manifest["name"].endswith("-s4+4") and manifest["init"]["manifest"]["name"].endswith("-s4")


def test_a_run_with_questions_no_passage_answers_reports_how_well_it_tells_them_apart(tmp_path):
    manifest = json.loads((train(tmp_path, "null", "--no-answer-rate", "1.0") / "passage_reader.json").read_text())
    assert manifest["dev"]["no_answer_questions"] > 0 and 0.0 <= manifest["dev"]["no_answer_auc"] <= 1.0
    assert "--no-answer-rate 1.0" in manifest["command"]


def test_each_sentence_gets_the_best_span_inside_it_and_a_sentence_past_the_token_limit_none():
    # tokens: [question, a, b, c, d]; the passage's sentences are characters 0-9 (tokens a, b) and 10-19 (c, d)
    segment = np.array([False, True, True, True, True])
    offsets = np.array([[0, 0], [0, 4], [5, 9], [10, 14], [15, 19]])
    starts = np.array([9.0, 1.0, 0.0, 0.0, 3.0])
    ends = np.array([9.0, 0.0, 2.0, 2.0, 1.0])
    marks = sentence_marks(starts, ends, segment, offsets, [(0, 9), (10, 19), (20, 30)])
    assert marks.spans[:2] == ((0, 9), (15, 19))  # a-b (1 + 2) beats a-a and b-b; d-d (3 + 1) beats c-c and c-d
    assert marks.scores[:2] == (3.0, 4.0)  # the question's token never counts
    assert marks.spans[2] is None and marks.scores[2] == float("-inf")


class NeutralReader:
    """A sentence reader with no opinion: every sentence 0.5, no span; the order it is handed stays."""

    name = "test/neutral"

    def read(self, question, candidates):
        return [Reading(0.5, None) for _ in candidates]


class PhrasePassageReader:
    """A tiny passage reader: in every sentence that holds `phrase` it marks the phrase (score 5), elsewhere
    its best is weak (-5)."""

    name = "test/phrase-passage-reader"

    def __init__(self, phrase):
        self.phrase, self.read_count = phrase, 0

    def read_passages(self, questions, passages, sentences):
        self.read_count += len(passages)
        out = []
        for passage, spans in zip(passages, sentences):
            found = [passage.find(self.phrase, s, e) for s, e in spans]
            out.append(PassageReading(tuple(5.0 if at >= 0 else -5.0 for at in found),
                                      tuple((at, at + len(self.phrase)) if at >= 0 else (s, s + 1)
                                            for at, (s, _) in zip(found, spans))))
        return out


def test_the_passage_readers_mark_moves_the_sentence_that_answers_in_context_to_the_first_quote(tmp_path):
    settings = make_settings(tmp_path)
    (settings.corpus / "exchange.md").write_text(
        "# Youth exchange\n\nThe partners agreed on a new youth exchange programme for civil servants in 2024. "
        "Officials praised the cooperation between the partners. The programme sends them to partner countries "
        "for six months.\n", encoding="utf-8")
    marking = PhrasePassageReader("six months")
    qa = QA(settings.with_answer(passage_weight=0.0, abstain_below=0.0), HashEmbedder(), reader=NeutralReader(),
            passage_reader=marking)
    qa.build()
    question = "How long is the youth exchange programme for civil servants?"
    alone = qa.ask(question)
    assert "six months" not in alone.citations[0].quote and marking.read_count == 0  # weight 0: it never reads
    assert alone.to_json()["reader"] == "test/neutral"

    qa.settings = qa.settings.with_answer(passage_weight=1.0)
    read = qa.ask(question)
    first = read.citations[0]
    assert "six months" in first.quote and marking.read_count >= 1
    text = (settings.corpus / "exchange.md").read_text(encoding="utf-8")
    assert text[slice(*first.answer)] == "six months" and first.start <= first.answer[0] < first.answer[1] <= first.end
    assert read.to_json()["reader"] == "test/neutral + test/phrase-passage-reader"
    assert read.confidence == alone.confidence  # abstention stays the sentence reader's: the mark moves the quote


def test_the_sentence_next_to_the_first_quote_where_the_passage_reader_found_its_answer_joins_it(tmp_path):
    """The sentence that restates the question ranks first; the answer is in the next one ("This hypothesis is
    called ..."): the quote takes both and marks the answer there."""
    settings = make_settings(tmp_path)
    text = ("# Complexity\n\nThe class P is often seen as a mathematical abstraction of efficient computation. "
            "This hypothesis is called the Cobham thesis. Many problems in NP have no known fast algorithm.\n")
    (settings.corpus / "complexity.md").write_text(text, encoding="utf-8")
    qa = QA(settings.with_answer(passage_weight=0.001, abstain_below=0.0), HashEmbedder(), reader=NeutralReader(),
            passage_reader=PhrasePassageReader("Cobham thesis"))
    qa.build()
    first = qa.ask("Which hypothesis sees the class P as a mathematical abstraction of efficient computation?").citations[0]
    assert first.quote == ("The class P is often seen as a mathematical abstraction of efficient computation. "
                           "This hypothesis is called the Cobham thesis.")
    assert text[slice(*first.answer)] == "Cobham thesis"


def test_the_passage_reader_also_reads_retrievals_best_passage_when_the_scorer_ranks_its_sentences_lower():
    from app.answer import passages_to_read
    from app.records import Hit
    from app.scoring import Candidate

    best, other, third = Hit(7, 0.8, 9.0, 0.05), Hit(3, 0.6, 4.0, 0.03), Hit(5, 0.5, 2.0, 0.02)
    ranked = [Candidate(2.0, 30, other, 0), Candidate(1.5, 50, third, 1), Candidate(1.0, 31, other, 1),
              Candidate(0.5, 70, best, 0)]
    assert passages_to_read(ranked, 2) == [3, 5, 7]  # the scorer's best two sentences' passages, then retrieval's
    assert passages_to_read(ranked, 1) == [3, 7]
    assert passages_to_read([Candidate(1.0, 70, best, 0), *ranked[:1]], 2) == [7, 3]  # read once
    assert passages_to_read([], 2) == []


def test_trained_weights_load_offline_without_pickle_and_mark_a_span_inside_each_sentence(tmp_path, monkeypatch):
    out = train(tmp_path, "run", "--steps", "2")  # a tiny run: the network path, not the quality
    weights = out / "passage_reader.safetensors"
    refuse_pickle(monkeypatch, weights)
    reader = PassageReader(weights, out / "passage_reader.json")
    assert reader.name == json.loads((out / "passage_reader.json").read_text(encoding="utf-8"))["name"]
    parts = ["The partners agreed on a new youth exchange programme for civil servants in 2024.",
             "This programme sends them abroad for six months.",
             "Officials praised the cooperation between the partners."]
    passage = " ".join(parts)
    sentences = [(passage.index(part), passage.index(part) + len(part)) for part in parts]
    question = "How long does the youth exchange programme send civil servants abroad?"
    marks = reader.read_passages([question, question], [passage, parts[0]], [sentences, [(0, len(parts[0]))]])
    assert len(marks[0].scores) == 3 and len(marks[1].scores) == 1 and np.isfinite(marks[0].scores).all()
    for (lo, hi), span in zip(sentences, marks[0].spans):
        assert lo <= span[0] < span[1] <= hi  # each sentence's best span lies inside it


class DissentingReader:
    """A sentence reader sure of the opposite: every sentence but those holding `phrase` answers."""

    name = "test/dissenting"

    def __init__(self, phrase):
        self.phrase = phrase

    def read(self, question, candidates):
        return [Reading(0.01 if self.phrase in text else 0.99, None) for text in candidates]


def test_the_sentence_readers_fitted_combination_applies_to_the_ranking_the_passage_reader_marked(tmp_path,
                                                                                                  monkeypatch):
    from app import scoring

    settings = make_settings(tmp_path)
    (settings.corpus / "exchange.md").write_text(
        "# Youth exchange\n\nThe partners agreed on a new youth exchange programme for civil servants in 2024. "
        "Officials praised the cooperation between the partners. The programme sends them to partner countries "
        "for six months.\n", encoding="utf-8")
    fitted = dict(scoring.weights(), reader={"name": "test/dissenting", "combine": {"weights": [1.0, 0.0], "bias": 0.0}})
    monkeypatch.setattr(scoring, "weights", lambda: fitted)  # dev chose: the sentence reader's verdict weighs 0
    qa = QA(settings.with_answer(passage_weight=1.0, abstain_below=0.0), HashEmbedder(),
            reader=DissentingReader("six months"), passage_reader=PhrasePassageReader("six months"))
    qa.build()
    answer = qa.ask("How long is the youth exchange programme for civil servants?")
    assert "six months" in answer.citations[0].quote  # unfitted, the dissenting reader's verdict alone would rank


def test_the_shipped_passage_reader_loads_offline_without_pickle_and_marks_the_answer_in_context(monkeypatch):
    from app.reader import PASSAGE_MANIFEST, PASSAGE_WEIGHTS

    assert PASSAGE_WEIGHTS.is_file() and PASSAGE_WEIGHTS.stat().st_size < 50e6
    refuse_pickle(monkeypatch, PASSAGE_WEIGHTS)
    manifest = json.loads(PASSAGE_MANIFEST.read_text(encoding="utf-8"))
    assert manifest["data"]["licence"] == "CC BY-SA 4.0" and manifest["command"].startswith("python -m train.passage_reader")
    parts = ["The partners agreed on a new youth exchange programme for civil servants in 2024.",
             "This programme sends them abroad for six months.",
             "Officials praised the cooperation between the partners."]
    passage = " ".join(parts)
    sentences = [(passage.index(part), passage.index(part) + len(part)) for part in parts]
    marks = PassageReader().read_passages(["How long does the youth exchange programme send civil servants abroad?"],
                                          [passage], [sentences])[0]
    assert int(np.argmax(marks.scores)) == 1  # the sentence that answers only through "This programme"
    assert "six months" in passage[slice(*marks.spans[1])]
