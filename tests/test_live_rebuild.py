"""Rebuilding while people ask: no question fails, and every answer comes from one complete index.

A document with a unique fact is added during the run. Each answer given meanwhile must equal the answer of
the old build or of the new one for that question (a half-swapped index would match neither); afterwards the
same, long-running `QA` answers the new fact from the new document.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from app.embedding import HashEmbedder
from app.qa import QA
from eval.questions import load_questions
from tests.conftest import ROOT, make_settings

FACT_DOC = "zorblatt-accord.md"
FACT_TEXT = ("# The Zorblatt Accord\n\nThe Zorblatt Accord on kelp farming was signed in Reykjavik by twelve "
             "coastal states.\n")
FACT_QUESTION = "Where was the Zorblatt Accord on kelp farming signed?"


class Askers:
    """Threads asking `questions` round and round until stopped, keeping every reply and every error."""

    def __init__(self, qa: QA, questions: list[str], count: int = 4, compare=lambda answer: answer.to_json()) -> None:
        self.qa, self.questions, self.compare = qa, questions, compare
        self.replies: list[tuple[str, dict]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._ask, args=(n,)) for n in range(count)]

    def _ask(self, n: int) -> None:
        i = n
        while not self._stop.is_set():
            question = self.questions[i % len(self.questions)]
            try:
                self.replies.append((question, self.compare(self.qa.ask(question))))
            except BaseException as exc:  # a failed question is the finding, not a reason to stop
                self.errors.append(exc)
            i += 1

    def wait_for(self, more: int, seconds: float = 300) -> None:
        """Until `more` further replies (or errors) have come in."""
        target = len(self.replies) + len(self.errors) + more
        deadline = time.monotonic() + seconds
        while len(self.replies) + len(self.errors) < target:
            assert time.monotonic() < deadline, "the askers stalled"
            time.sleep(0.01)

    def __enter__(self) -> "Askers":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(300)
        assert not any(t.is_alive() for t in self._threads), "an asker hung"


def check_run(askers: Askers, old: dict, new: dict) -> None:
    assert askers.errors == []
    mixed = [(q, a) for q, a in askers.replies if a not in (old[q], new[q])]
    assert mixed == [], f"{len(mixed)} answers match neither build"
    fact = [a for q, a in askers.replies if q == FACT_QUESTION]
    assert old[FACT_QUESTION] in fact and new[FACT_QUESTION] in fact, "the run did not span the swap"
    assert all(c["doc"] != FACT_DOC for c in old[FACT_QUESTION]["citations"])
    first = new[FACT_QUESTION]["citations"][0]
    assert first["doc"] == FACT_DOC and "Reykjavik" in first["quote"]


def small_corpus(tmp_path):
    """Two short readouts of the White House evaluation set: a real-model build of them takes seconds."""
    settings = make_settings(tmp_path)
    for name in ("2021-10-26-readout-us-asean-summit.md", "2022-11-13-readout-east-asia-summit.md"):
        shutil.copy(ROOT / "eval" / "datasets" / "wh_readouts" / "corpus" / name, settings.corpus / name)
    return settings


def test_questions_during_an_in_process_rebuild(tmp_path):
    qa = QA(make_settings(tmp_path, ROOT / "corpus"), HashEmbedder())
    qa.build()
    questions = [q.question for q in load_questions(ROOT / "eval" / "questions.jsonl")[:12]] + [FACT_QUESTION]
    old = {q: qa.ask(q).to_json() for q in questions}
    with Askers(qa, questions) as askers:
        askers.wait_for(50)
        (qa.settings.corpus / FACT_DOC).write_text(FACT_TEXT, encoding="utf-8")
        builder = threading.Thread(target=qa.build)
        builder.start()
        builder.join(300)
        askers.wait_for(100)
    new = {q: qa.ask(q).to_json() for q in questions}
    assert new == {q: QA(qa.settings, HashEmbedder()).ask(q).to_json() for q in questions}
    check_run(askers, old, new)


def without_scores(answer) -> dict:
    """The answer JSON minus float scores, which may differ in the last digit between model processes."""
    out = answer.to_json()
    out["citations"] = [{k: v for k, v in c.items() if k != "score"} for c in out["citations"]]
    return out


@pytest.mark.slow
def test_questions_during_a_build_by_another_process(tmp_path, real_embedder):
    """`python -m app build` in a subprocess (its own model) swaps the index under a serving `QA`."""
    settings = small_corpus(tmp_path)
    qa = QA(settings, real_embedder)
    qa.build()
    questions = ["Who attended the East Asia Summit?", "What did the leaders discuss about Burma?",
                 "Where was the U.S.-ASEAN Summit held?", FACT_QUESTION]
    old = {q: without_scores(qa.ask(q)) for q in questions}
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with Askers(qa, questions, count=2, compare=without_scores) as askers:  # 2: the build needs the CPU too
        askers.wait_for(4)
        (settings.corpus / FACT_DOC).write_text(FACT_TEXT, encoding="utf-8")
        build = subprocess.run([sys.executable, "-m", "app", "build", "--json", "--corpus", str(settings.corpus),
                                "--index", str(settings.index)], cwd=ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
        askers.wait_for(8)
    assert build.returncode == 0, build.stderr[-2000:]
    assert json.loads(build.stdout.strip().splitlines()[-1])["added"] == 1
    new = {q: without_scores(qa.ask(q)) for q in questions}
    check_run(askers, old, new)


@pytest.mark.slow
def test_a_new_plainly_stated_fact_is_answered(tmp_path, real_embedder):
    """After a rebuild, a question whose answer is one plain sentence of the new document gets that sentence as
    its answer, not "the documents don't say" with the answer listed as related."""
    settings = small_corpus(tmp_path)
    (settings.corpus / FACT_DOC).write_text(FACT_TEXT, encoding="utf-8")
    (settings.corpus / "ocean-accord.md").write_text(
        "# Ocean Accord\n\nThe Ocean Accord on sustainable fishing was signed in Lisbon by twelve coastal states "
        "in 2031.\n", encoding="utf-8")
    qa = QA(settings, real_embedder)
    qa.build()
    for question, doc, answer in [(FACT_QUESTION, FACT_DOC, "Reykjavik"),
                                  ("Where was the Ocean Accord signed?", "ocean-accord.md", "Lisbon")]:
        reply = qa.ask(question)
        assert (reply.citations[0].doc, answer in reply.citations[0].quote) == (doc, True)
        assert not reply.abstained, f"abstained on {question!r} (confidence {reply.confidence:.2f})"
