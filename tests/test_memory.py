"""A long-running server does not grow: resident memory stays flat over many questions and conversations.

RSS is read after a warm-up (caches, allocator pools and lazily built structures fill first) and again after
many more distinct questions; anything kept per question (an unbounded cache, a growing history) shows up.
"""

from __future__ import annotations

import gc

import pytest

from eval.questions import load_questions
from tests.conftest import ROOT

GROWTH_LIMIT_MB = 10.0  # measured: well under 1 MB; keeping each answer (~5 kB) 1,000 times would show
REAL_MODEL_LIMIT_MB = 30.0  # torch's allocator pools vary with input length


def rss_mb() -> float:
    """This process's resident set size, from /proc/self/status (VmRSS, in kB)."""
    gc.collect()
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def asked() -> list[str]:
    return [q.question for q in load_questions(ROOT / "eval" / "questions.jsonl")]


def distinct(asked: list[str], n: int, offset: int = 0) -> list[str]:
    """`n` questions, none repeated, so that a per-question cache would keep growing."""
    return [f"{asked[i % len(asked)]} ({offset + i})" for i in range(n)]


def growth(ask, warm_up: list, measured: list) -> float:
    for args in warm_up:
        ask(*args)
    before = rss_mb()
    for args in measured:
        ask(*args)
    return rss_mb() - before


def test_rss_stays_flat_over_a_thousand_questions(seed_fake_qa, asked):
    # the reader's native kernel and allocator pools fill over the first few hundred answers (+8 MB from the
    # 100th to the 300th here, then ~1 MB per 300): the warm-up covers that, growth after it is what counts
    warm_up = [(q,) for q in distinct(asked, 300)]
    measured = [(q,) for q in distinct(asked, 1000, offset=300)]
    assert growth(seed_fake_qa.ask, warm_up, measured) < GROWTH_LIMIT_MB


def test_rss_stays_flat_over_many_conversations(seed_fake_qa, asked):
    """120 conversations of 5 turns, each turn asked with the conversation so far as history."""

    def conversations(count: int, offset: int) -> list[tuple[str, tuple[str, ...]]]:
        turns = []
        for c in range(count):
            history: list[str] = []
            for question in distinct(asked, 5, offset=offset + 5 * c):
                turns.append((question, tuple(history)))
                history.append(question)
        return turns

    assert growth(seed_fake_qa.ask, conversations(20, 0), conversations(120, 100)) < GROWTH_LIMIT_MB


@pytest.mark.slow
def test_rss_stays_flat_with_the_real_model(seed_qa, asked):
    warm_up = [(q,) for q in distinct(asked, 20)]
    measured = [(q,) for q in distinct(asked, 100, offset=20)]
    assert growth(seed_qa.ask, warm_up, measured) < REAL_MODEL_LIMIT_MB
