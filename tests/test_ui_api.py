"""The running app's APIs as programs use them: the REST endpoint `POST /api/ask` (question and history in,
the answer JSON out, documented on the server's OpenAPI page), and Gradio's `/ask` through gradio_client
(the same, with history too). Quotes are verbatim from the documents; a core error comes back as a clear
error. Real model, seed corpus; `python -m app serve` itself is started once, as a person would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest

from app.qa import QA
from app.server import Server
from eval.questions import load_questions
from tests.conftest import ROOT, ServedAPI, make_settings

pytestmark = pytest.mark.slow
AppError = pytest.importorskip("gradio_client.exceptions").AppError

CONTRACT = {"question", "abstained", "answer", "citations"}
CITATION = {"id", "quote", "doc", "title", "section", "start", "end", "score"}


@pytest.fixture(scope="module")
def served(seed_qa):
    app = ServedAPI(seed_qa)
    yield app
    app.close()


@pytest.fixture(scope="module")
def conversation(seed_qa) -> tuple[str, str]:
    """A seed conversation whose follow-up is answered differently without its first question."""
    for q in load_questions(ROOT / "eval" / "questions.jsonl"):
        if len(q.history) == 1 and seed_qa.ask(q.question, q.history).to_json() != seed_qa.ask(q.question).to_json():
            return q.history[0], q.question
    pytest.fail("no seed conversation needs its history")


def document_text(corpus, doc: str) -> str:
    with open(corpus / doc, encoding="utf-8") as handle:
        return handle.read()


def assert_contract(reply: dict, corpus) -> None:
    assert CONTRACT <= set(reply)
    for number, citation in enumerate(reply["citations"], start=1):
        assert CITATION <= set(citation) and citation["id"] == number
        assert document_text(corpus, citation["doc"])[citation["start"]:citation["end"]] == citation["quote"]


def post(served, question, history=None, **extra) -> httpx.Response:
    body = {"question": question, **({"history": history} if history is not None else {}), **extra}
    return httpx.post(served.url + "api/ask", json=body, timeout=120)


def test_rest_ask_returns_the_answer_json_with_verbatim_citations(served):
    question = "What did Japan propose on artificial intelligence?"
    response = post(served, question)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    reply = response.json()
    assert_contract(reply, served.qa.settings.corpus)
    assert reply["question"] == question and reply["abstained"] is False
    assert "Artificial Intelligence" in reply["citations"][0]["quote"]
    assert reply["answer"].startswith("“") and "[1]" in reply["answer"]
    assert reply == served.qa.ask(question).to_json()  # the same answer the core gives, every field


def test_rest_follow_up_is_answered_with_its_history(served, conversation):
    first, second = conversation
    with_history = post(served, second, [first]).json()
    assert with_history == served.qa.ask(second, [first]).to_json()
    assert with_history != post(served, second, []).json() == served.qa.ask(second).to_json()
    assert_contract(with_history, served.qa.settings.corpus)


def test_rest_abstains_and_refuses_malformed_requests_clearly(served):
    reply = post(served, "Who is the king of France?").json()
    assert reply["abstained"] is True and reply["answer"].startswith("The documents don't say")
    assert_contract(reply, served.qa.settings.corpus)
    missing = httpx.post(served.url + "api/ask", json={"history": []}, timeout=60)
    assert missing.status_code == 422 and "question" in missing.text
    wrong = post(served, "What is the WA Project?", "not a list")
    assert wrong.status_code == 422 and "history" in wrong.text


def test_rest_endpoint_is_documented_on_the_openapi_page(served):
    schema = httpx.get(served.url + "openapi.json", timeout=30).json()
    operation = schema["paths"]["/api/ask"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][body]["properties"]
    assert set(fields) == {"question", "history"} and fields["history"]["type"] == "array"
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"question", "abstained", "answer", "citations"} <= set(schema["components"]["schemas"][answer]["properties"])
    docs = httpx.get(served.url + "docs", timeout=30)
    assert docs.status_code == 200 and "openapi.json" in docs.text and "cdn" not in docs.text.lower()
    for asset in ("api/static/swagger-ui-bundle.js", "api/static/swagger-ui.css"):  # served here, not from a CDN
        assert httpx.get(served.url + asset, timeout=30).status_code == 200


def test_gradio_ask_takes_history_and_returns_the_contract(served, conversation):
    first, second = conversation
    client = served.client()
    alone = client.predict("What did Japan propose on artificial intelligence?", api_name="/ask")
    assert alone == served.qa.ask("What did Japan propose on artificial intelligence?").to_json()
    assert_contract(alone, served.qa.settings.corpus)
    in_context = client.predict(second, [first], api_name="/ask")
    assert in_context == served.qa.ask(second, [first]).to_json()
    assert in_context != client.predict(second, [], api_name="/ask")
    names = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")[
        "named_endpoints"]["/ask"]["parameters"]]
    assert names == ["question", "history"]


def test_ask_without_an_index_is_a_clear_error(tmp_path, real_embedder):
    app = ServedAPI(QA(make_settings(tmp_path), real_embedder))
    try:
        with pytest.raises(AppError, match=r"no index at .*run `python -m app build`"):
            app.client().predict("What is in the documents?", api_name="/ask")
        response = post(app, "What is in the documents?")
        assert response.status_code == 503 and "python -m app build" in response.json()["detail"]
    finally:
        app.close()


def test_document_page_shows_only_indexed_documents(served):
    answer = served.qa.ask("What is Japan's position on Myanmar?").citations[0]
    page = httpx.get(served.url + "document", params={"doc": answer.doc, "start": answer.start, "end": answer.end},
                     timeout=30)
    assert page.status_code == 200 and '<mark id="vb-quote">' in page.text and "<script" not in page.text
    for doc in ("../pyproject.toml", "/etc/passwd", ".about/SOURCE.txt", "missing.txt"):
        refused = httpx.get(served.url + "document", params={"doc": doc}, timeout=30)
        assert refused.status_code == 404 and "not in the index" in refused.text


def test_uploads_are_off_beyond_this_machine_unless_allowed(seed_fake_qa):
    assert Server(seed_fake_qa, host="127.0.0.1").upload
    assert not Server(seed_fake_qa, host="0.0.0.0").upload
    assert Server(seed_fake_qa, host="0.0.0.0", allow_upload=True).upload


def test_serve_says_what_it_is_doing_and_offers_no_share_link(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(tmp_path, ROOT / "corpus")
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), "--corpus",
                                str(settings.corpus), "--index", str(settings.index)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("Serving at"):
                break
        reply = httpx.post(f"http://127.0.0.1:{port}/api/ask", json={"question": "Where was the summit held?"},
                           timeout=120)
        assert reply.status_code == 200 and reply.json()["question"] == "Where was the summit held?"
    finally:
        process.terminate()
        rest = process.communicate(timeout=60)[0]
    output = "\n".join(lines) + rest
    assert lines[0].startswith("Loading the model")
    assert any(line.startswith("Bringing the index up to date: 1 file in") for line in lines)
    assert f"Serving at http://127.0.0.1:{port}/ (this machine only)" in output
    assert "share" not in output.lower() and "Traceback" not in output
