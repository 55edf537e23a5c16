"""The unrelated-question bank: a corpus that answers general-knowledge questions confidently gets a higher
abstention threshold, one the bank is foreign to keeps the fitted one, and a configured threshold stays."""

from __future__ import annotations

import numpy as np
import pytest

from app import calibration, scoring
from app.embedding import HashEmbedder
from app.lexical import tokens
from app.qa import QA
from app.reader import Reading
from tests.conftest import DATA, make_settings

RULE = {"quantile": 0.8, "cap": 0.9}


class OverlapReader:
    """Its probability is the share of the question's content words the sentence holds."""

    name = "test/overlap-reader"

    def read(self, question, candidates):
        words = set(tokens(question))
        return [Reading(len(words & set(tokens(text))) / max(len(words), 1), None) for text in candidates]


class CountingReader(OverlapReader):
    def __init__(self) -> None:
        self.calls = 0

    def read(self, question, candidates):
        self.calls += 1
        return super().read(question, candidates)


@pytest.fixture
def fitted_rule(monkeypatch):
    """scoring.json as if eval.fit had fitted OverlapReader a rise (and nothing else: the base stays 0.5)."""
    real = scoring.reader_fit
    monkeypatch.setattr(scoring, "reader_fit",
                        lambda name: {"unrelated": RULE} if name == OverlapReader.name else real(name))


def test_the_threshold_rises_to_the_banks_quantile_but_not_past_its_cap_and_never_falls():
    assert calibration.corpus_threshold(0.2, np.linspace(0.0, 1.0, 11), RULE) == pytest.approx(0.8)
    assert calibration.corpus_threshold(0.2, [1.0] * 10, RULE) == 0.9
    assert calibration.corpus_threshold(0.2, [0.05] * 10, RULE) == 0.2
    assert calibration.corpus_threshold(0.2, [1.0] * 10, None) == 0.2


def test_the_bank_ships_general_questions_without_its_header():
    bank = calibration.unrelated_questions()
    assert len(bank) == 150 and len(set(bank)) == 150
    assert all(q.endswith("?") or q[-1].isalnum() for q in bank) and not any(q.startswith("#") for q in bank)


def test_a_corpus_that_answers_the_bank_raises_its_threshold_once_rebuilt(tmp_path, fitted_rule):
    qa = QA(make_settings(tmp_path, DATA / "corpus"), HashEmbedder(), reader=OverlapReader())
    qa.build()
    assert qa.threshold() == 0.5  # the bank is foreign to a garden guide and a harbour report
    question = "When are the compost bins in the garden emptied by the volunteers?"
    answered = qa.ask(question)
    assert not answered.abstained and 0.5 < answered.confidence < 0.9

    (qa.settings.corpus / "trivia.txt").write_text(
        "\n\n".join(q.rstrip("?") + "." for q in calibration.unrelated_questions()), encoding="utf-8")
    qa.build()
    assert qa.threshold() == 0.9  # it now answers unrelated questions as well as its own: the cap
    again = qa.ask(question)
    assert again.abstained and again.confidence == pytest.approx(answered.confidence)
    assert again.citations  # declined, still pointing at the related passages
    assert (qa.store().folder / calibration.CACHE_FILE).is_file()
    fresh = QA(qa.settings, HashEmbedder(), reader=CountingReader())
    assert fresh.threshold() == 0.9 and fresh.reader.calls == 0  # kept beside the build: not asked again

    fixed = QA(qa.settings.with_answer(abstain_below=0.5), HashEmbedder(), reader=OverlapReader())
    assert fixed.threshold() == 0.5 and not fixed.ask(question).abstained  # a configured threshold is applied as given


def test_fit_keeps_the_banks_quantile_that_declines_the_most_dev_unanswerables_within_the_bound():
    from eval.fit import choose_quantile

    answerable = [(p, "wiki", False, True) for p in np.linspace(0.5, 0.95, 20)]
    unanswerable = [(p, "wiki", True, False) for p in (0.3, 0.4, 0.45)]
    bank = {"wiki": np.linspace(0.0, 0.6, 101)}  # its 70% quantile is 0.42, 80% 0.48, 90% 0.54
    rule = choose_quantile(answerable + unanswerable, bank, 0.2, (0.95, 0.9, 0.8, 0.7), max_false=0.05)
    # 0.7 declines two of three; 0.8 all three, and so would 0.9 and 0.95, held to the cap where one
    # answerable question in twenty (the bound) falls under it: the lowest that declines the most is kept
    assert rule == {"quantile": 0.8, "cap": 0.52}
