"""The passage reader's training (stage 13, `python -m train.passage_reader`): its examples, its loss over a
question's passages together, and a tiny run that writes weights and a manifest and resumes to the same
weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests.conftest import DATA, tiny_training

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


def test_the_answer_is_one_softmax_over_all_of_a_questions_passages():
    from train.passage_reader import loss_of

    class Fixed(torch.nn.Module):  # two passages of four tokens; the answer is token 1 of the first
        def __init__(self, span_logits):
            super().__init__()
            self.span_logits = span_logits

        def forward(self, ids, mask, types):
            return torch.zeros(len(ids)), self.span_logits[: len(ids), : ids.shape[1]]

    ids = torch.ones(2, 4, dtype=torch.long)
    batch = (ids, torch.ones_like(ids), torch.ones_like(ids), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), [(1, 1)])
    right, wrong = torch.zeros(2, 4, 2), torch.zeros(2, 4, 2)
    right[0, 1] = 8.0  # the answer's token stands out
    wrong[1, 2] = 8.0  # the other passage's token stands out: wrong across passages, not within the first
    assert loss_of(Fixed(right), batch)[2] < 0.1 < loss_of(Fixed(wrong), batch)[2]


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
