"""Bad questions get a sensible reply, never a traceback: in the core, on the command line and over the API.

"Quickly" means the call returns: a generous timeout catches a hang, never a speed regression.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from pathlib import Path

import pytest

from app.cli import main
from app.embedding import HashEmbedder
from app.records import Answer

HANG_SECONDS = 120  # far above any real reply; only a hang gets near it

PROMPT = "Please type a question"
ABSTAIN = "The documents don't say"

# name -> (question, what a sensible reply is: a prompt for a question, a notice of the cut, or a reply:
# an abstention or verbatim quotes)
BAD = {
    "empty": ("", "prompt"),
    "whitespace": (" \t\n\u3000 \r\n ", "prompt"),
    "controls-only": ("\x00\x07\x1b\x7f\u200b", "prompt"),
    "one-char": ("x", "reply"),
    "huge": (("What did the leaders agree about maritime security? " * 4000)[:200_000], "truncated"),
    "controls": ("Where was\x00 the\x07 summit\x1b[2J held?\r\n\x7f", "reply"),
    "japanese": ("日米首脳会談ではどのような合意がなされましたか？", "reply"),
    "thai": ("การประชุมสุดยอดอาเซียนจัดขึ้นที่ไหน", "reply"),
    "html": ("<script>alert(1)</script>", "reply"),
}
NOTHING_TO_FIND = ["one-char", "html"]  # the real model abstains on these (the fake's 64 buckets collide)


def returns_within(seconds: float, call):
    """Run `call` in a thread and fail, instead of hanging the suite, if it has not returned in `seconds`."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no reply within {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def check_answer(answer: Answer, corpus: Path, question: str, expect: str, max_chars: int) -> None:
    assert isinstance(answer, Answer)
    assert answer.answer.strip(), "an empty reply"
    assert not any(unicodedata.category(ch) == "Cc" for ch in answer.question), "control characters kept"
    assert len(answer.question) <= max_chars
    for c in answer.citations:
        assert (corpus / c.doc).read_text(encoding="utf-8")[c.start:c.end] == c.quote
    if expect == "prompt":
        assert answer.abstained and not answer.citations and answer.answer.startswith(PROMPT)
    elif expect == "truncated":
        assert answer.notice and f"{len(question):,}" in answer.notice and f"{max_chars:,}" in answer.notice
    else:
        assert answer.answer.startswith(ABSTAIN) or (answer.citations and not answer.abstained)
    if expect != "truncated":
        assert answer.notice is None


@pytest.mark.parametrize("name", BAD)
def test_core_replies_sensibly(seed_fake_qa, name):
    question, expect = BAD[name]
    answer = returns_within(HANG_SECONDS, lambda: seed_fake_qa.ask(question))
    settings = seed_fake_qa.settings
    check_answer(answer, settings.corpus, question, expect, settings.answer.max_question_chars)


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD)
def test_core_replies_sensibly_with_the_real_model(seed_qa, name):
    """The real tokenizer meets the odd text (CJK, Thai, control characters, 200,000 characters)."""
    question, expect = BAD[name]
    answer = returns_within(HANG_SECONDS, lambda: seed_qa.ask(question))
    check_answer(answer, seed_qa.settings.corpus, question, expect, seed_qa.settings.answer.max_question_chars)
    if name in NOTHING_TO_FIND:
        assert answer.abstained and answer.answer.startswith(ABSTAIN)


@pytest.mark.parametrize("name", ["controls", "huge", "html"])
def test_bad_history_is_harmless(seed_fake_qa, name):
    """The conversation's earlier questions are as untrusted as the question itself."""
    history = [q for q, _ in BAD.values()]
    answer = returns_within(HANG_SECONDS, lambda: seed_fake_qa.ask(BAD[name][0], history))
    check_answer(answer, seed_fake_qa.settings.corpus, BAD[name][0], BAD[name][1],
                 seed_fake_qa.settings.answer.max_question_chars)


# --- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def cli_args(seed_fake_qa, monkeypatch):
    """The CLI over the fake-embedder index (the CLI's own embedder replaced by the same fake)."""
    monkeypatch.setattr("app.qa.default_embedder", HashEmbedder)
    s = seed_fake_qa.settings
    return ["--corpus", str(s.corpus), "--index", str(s.index)]


@pytest.mark.parametrize("name", BAD)
def test_cli_replies_with_a_clear_message(cli_args, capsys, name):
    question, expect = BAD[name]
    code = returns_within(HANG_SECONDS, lambda: main(["ask", question, *cli_args]))
    out, err = capsys.readouterr()
    assert code == 0
    assert err == "" and "Traceback" not in out
    assert out.strip()
    if expect == "prompt":
        assert out.startswith(PROMPT)
    elif expect == "truncated":
        assert out.startswith(f"(Your question was {len(question):,} characters")
    else:
        assert out.startswith((ABSTAIN, "“"))


@pytest.mark.parametrize("name", BAD)
def test_cli_json_is_one_valid_object(cli_args, capsys, name):
    question, _ = BAD[name]
    code = returns_within(HANG_SECONDS, lambda: main(["ask", question, "--json", *cli_args]))
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    answer = json.loads(out.strip().splitlines()[-1])
    assert set(answer) - {"notice"} == {"question", "abstained", "answer", "citations", "reader"}
    assert ("notice" in answer) == (name == "huge")  # the cut question says so
    assert answer["answer"].strip()


# --- the API (the Gradio endpoint "ask", through gradio_client as any program would call it) ------------


@pytest.fixture(scope="module")
def api_client(seed_fake_api):
    return seed_fake_api.client()


@pytest.mark.parametrize("name", BAD)
def test_api_replies_sensibly(seed_fake_api, api_client, name):
    question, expect = BAD[name]
    reply = returns_within(HANG_SECONDS, lambda: api_client.predict(question, api_name="/ask"))
    assert set(reply) >= {"question", "abstained", "answer", "citations"}
    assert reply["answer"].strip() and "Traceback" not in reply["answer"]
    corpus = seed_fake_api.qa.settings.corpus
    for c in reply["citations"]:
        assert (corpus / c["doc"]).read_text(encoding="utf-8")[c["start"]:c["end"]] == c["quote"]
    if expect == "prompt":
        assert reply["abstained"] and reply["answer"].startswith(PROMPT)
    elif expect == "truncated":
        assert len(reply["question"]) <= seed_fake_api.qa.settings.answer.max_question_chars
    else:
        assert reply["answer"].startswith((ABSTAIN, "“"))
