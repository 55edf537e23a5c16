"""Many people asking at once: no errors, and each gets the answer they would get alone.

Modest sizes to keep the suite fast; `python -m eval.load_bench` runs the full sizes and prints latencies.
"""

from __future__ import annotations

import threading

import pytest

from eval.questions import load_questions
from tests.conftest import ROOT

CLIENTS, EACH = 16, 10


@pytest.fixture(scope="module")
def questions() -> list[tuple[str, tuple[str, ...]]]:
    """The project's question set (conversations with their history), one distinct list per client."""
    asked = [(q.question, q.history) for q in load_questions(ROOT / "eval" / "questions.jsonl")]
    return [asked[(n * EACH + j) % len(asked)] for n in range(CLIENTS) for j in range(EACH)]


def run_clients(make_ask, questions) -> tuple[list[BaseException], dict[int, object]]:
    """CLIENTS threads, each with its own `make_ask()`, asking EACH questions in turn; errors collected."""
    errors: list[BaseException] = []
    replies: dict[int, object] = {}

    def client(n: int) -> None:
        ask = make_ask()
        for j in range(EACH):
            i = n * EACH + j
            try:
                replies[i] = ask(*questions[i])
            except BaseException as exc:  # every failure is counted, none stops the other clients
                errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return errors, replies


def test_concurrent_questions_get_the_answers_they_get_alone(seed_fake_qa, questions):
    qa = seed_fake_qa
    alone = [qa.ask(q, h).to_json() for q, h in questions]
    errors, replies = run_clients(lambda: qa.ask, questions)
    assert errors == []
    assert [replies[i].to_json() for i in range(len(questions))] == alone


def test_concurrent_api_clients_get_the_answers_they_get_alone(seed_fake_api, questions):
    """16 programs, each with its own gradio_client, ask 10 questions each through the `ask` endpoint."""
    qa = seed_fake_api.qa
    single = [(q, ()) for q, _ in questions]  # the endpoint takes one question, no history
    alone = [qa.ask(q).to_json() for q, _ in single]

    def make_ask():
        client = seed_fake_api.client()
        return lambda question, history: client.predict(question, api_name="/ask")

    errors, replies = run_clients(make_ask, single)
    assert errors == []
    for i, expected in enumerate(alone):
        reply = replies[i]
        assert {k: reply[k] for k in expected} == expected
