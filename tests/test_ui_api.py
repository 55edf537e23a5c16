"""The running app's API as a program uses it: `gradio_client.Client(url).predict(question, api_name="/ask")`
returns the answer JSON of the contract, quotes verbatim from the documents; a core error comes back as a
clear error. Real model, seed corpus.
"""

from __future__ import annotations

import pytest

from app.qa import QA
from tests.conftest import ServedAPI, make_settings

pytestmark = pytest.mark.slow
AppError = pytest.importorskip("gradio_client.exceptions").AppError

CONTRACT = {"question", "abstained", "answer", "citations"}
CITATION = {"id", "quote", "doc", "title", "section", "start", "end", "score"}


@pytest.fixture(scope="module")
def served(seed_qa):
    app = ServedAPI(seed_qa)
    yield app
    app.close()


def document_text(corpus, doc: str) -> str:
    with open(corpus / doc, encoding="utf-8") as handle:
        return handle.read()


def test_ask_returns_the_contract_with_verbatim_citations(served):
    question = "How much money did President Biden announce for the U.S.-ASEAN Strategic Partnership?"
    reply = served.client().predict(question, api_name="/ask")
    assert set(reply) == CONTRACT
    assert reply["question"] == question and reply["abstained"] is False
    assert "$102 million" in reply["citations"][0]["quote"]
    assert reply["answer"].startswith("“") and "[1]" in reply["answer"]
    for number, citation in enumerate(reply["citations"], start=1):
        assert CITATION <= set(citation) and citation["id"] == number
        text = document_text(served.qa.settings.corpus, citation["doc"])
        assert text[citation["start"]:citation["end"]] == citation["quote"]
    assert reply == served.qa.ask(question).to_json()  # the same answer the core gives


def test_ask_abstains_in_the_contract_too(served):
    reply = served.client().predict("Who is the king of France?", api_name="/ask")
    assert set(reply) == CONTRACT and reply["abstained"] is True
    for citation in reply["citations"]:
        text = document_text(served.qa.settings.corpus, citation["doc"])
        assert text[citation["start"]:citation["end"]] == citation["quote"]


def test_ask_without_an_index_is_a_clear_error(tmp_path, real_embedder):
    app = ServedAPI(QA(make_settings(tmp_path), real_embedder))
    try:
        with pytest.raises(AppError, match=r"no index at .*run `python -m app build`"):
            app.client().predict("What is in the documents?", api_name="/ask")
    finally:
        app.close()
