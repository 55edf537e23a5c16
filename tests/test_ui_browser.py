"""The chat page as a person uses it: headless Chromium against the running app over the seed corpus plus one
document full of markup, with the real model.

Waits are for the answer on the page, never for network idle (Gradio keeps its connections open). Every
test also checks that the page asked nothing of any host but 127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from app.qa import QA
from app.settings import Settings
from tests.conftest import ROOT, ServedAPI

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
ANSWER_WAIT_MS = 90_000  # the machine is shared; a slow answer is not a failure here
SCREENSHOT = ROOT / "docs" / "screenshot.png"
MARKUP_DOC = """# Notice board incident

## What the harbour office pasted

The harbour office pasted a strange snippet into the notice board page:
<script>window.__pwned=1</script> followed by the image tag
<img src=x onerror="window.__pwned=1"> and the words *not bold* and [a link](javascript:window.__pwned=1).

The snippet was reported to the lighthouse keeper on Tuesday.
"""
LOCAL = ("http://127.0.0.1:", "data:", "blob:")  # nothing else may be fetched
LATENCIES: list[tuple[str, float]] = []


@pytest.fixture(scope="module")
def served(seed_qa, real_embedder, tmp_path_factory):
    """The app over a copy of the seed corpus and its index plus the markup document (one passage embedded)."""
    root = tmp_path_factory.mktemp("ui")
    shutil.copytree(seed_qa.settings.corpus, root / "corpus")
    shutil.copytree(seed_qa.settings.index, root / "index", symlinks=True)
    (root / "corpus" / "notice-board.md").write_text(MARKUP_DOC, encoding="utf-8")
    qa = QA(Settings(corpus=root / "corpus", index=root / "index"), real_embedder)
    assert qa.build().added == 1
    app = ServedAPI(qa)
    yield app
    app.close()
    if LATENCIES:
        print("\nanswer latency in the browser (Enter to answer shown): " +
              ", ".join(f"{s:.2f}s" for _, s in LATENCIES) +
              f"; median {sorted(s for _, s in LATENCIES)[len(LATENCIES) // 2]:.2f}s")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, served):
    """A fresh browser session on the chat page, textbox ready; afterwards, no request may have left this host."""
    context = browser.new_context(viewport={"width": 1280, "height": 1024})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(served.url)
    expect(page.locator("#vb-question textarea")).to_be_visible(timeout=60_000)
    yield page
    context.close()
    assert requests and not [url for url in requests if not url.startswith(LOCAL)]


def ask(page, question: str):
    """Type the question, press Enter, wait for the reply; the reply's locator."""
    replies = page.locator("#vb-chat .vb-reply, #vb-chat .vb-message")
    before = replies.count()
    started = time.perf_counter()
    page.locator("#vb-question textarea").fill(question)
    page.locator("#vb-question textarea").press("Enter")
    expect(replies).to_have_count(before + 1, timeout=ANSWER_WAIT_MS)
    LATENCIES.append((question, time.perf_counter() - started))
    return replies.nth(before)


def fold(text: str) -> str:
    return " ".join(text.split())


def test_answer_quotes_with_marker_linked_to_its_source_card(page, served):
    question = "How will the Coast Guard help Southeast Asia?"
    expected = served.qa.ask(question)
    counts = served.qa.store().manifest["counts"]
    status = page.locator("#vb-status")
    expect(status).to_contain_text(f"{counts['documents']} documents · {counts['chunks']} passages")
    expect(status).to_contain_text("all-MiniLM-L6-v2")

    reply = ask(page, question)
    first = expected.citations[0]
    quote = reply.locator("blockquote.vb-quote").first
    expect(quote).to_contain_text(re.compile(r"Coast Guard|USCG"))  # on topic: the Coast Guard or its acronym
    expect(quote).to_contain_text(f"“{fold(first.quote)}” [1]")
    expect(reply.locator("a.vb-marker")).to_have_count(len(expected.citations))
    for citation in expected.citations:  # each marker leads to a card: title, and the quote marked in its passage
        marker = reply.locator("a.vb-marker").nth(citation.id - 1)
        expect(marker).to_have_text(f"[{citation.id}]")
        card = reply.locator(marker.get_attribute("href"))
        expect(card.locator(".vb-num")).to_have_text(str(citation.id))
        expect(card.locator(".vb-title")).to_have_text(citation.title)
        expect(card.locator("mark")).to_have_text(fold(citation.quote))
        assert fold(card.locator(".vb-passage").inner_text()).strip("… ") in fold(citation.context)
        assert marker.evaluate("e => getComputedStyle(e).color") == \
            card.locator(".vb-num").evaluate("e => getComputedStyle(e).backgroundColor")  # one colour per source

    page.locator("#vb-chat .vb-question").last.evaluate("e => { e.scrollIntoView({block: 'start'}); scrollTo(0, 0) }")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT)

    marker = quote.locator("a.vb-marker")
    card = reply.locator(marker.get_attribute("href"))
    marker.click()
    assert card.evaluate("e => e.matches(':target')")  # the marker leads to its card


def test_follow_up_is_answered_in_context_until_a_new_conversation(page, served):
    first, follow_up = "What is the ASEAN Center for Climate Change?", "Where is it based?"
    in_context, alone = served.qa.ask(follow_up, [first]), served.qa.ask(follow_up)
    assert headline(in_context) != headline(alone)  # what makes this conversation a real test

    ask(page, first)
    reply = ask(page, follow_up)
    expect(reply.locator("blockquote.vb-primary")).to_contain_text("Brunei Darussalam")
    expect(reply).to_contain_text(headline(in_context))

    page.locator("#vb-new").click()
    expect(page.locator("#vb-chat .vb-reply")).to_have_count(0)
    expect(ask(page, follow_up)).to_contain_text(headline(alone))  # asked afresh, without the earlier question


def headline(answer) -> str:
    """What a reply shows first: its first quote, or the abstention."""
    return answer.answer.splitlines()[0] if answer.abstained else fold(answer.citations[0].quote)


def test_markup_in_documents_and_questions_shows_as_text_and_never_runs(page):
    reply = ask(page, "What snippet did the harbour office paste into the notice board page?")
    expect(reply.locator("blockquote.vb-primary")).to_contain_text(
        '<script>window.__pwned=1</script> followed by the image tag <img src=x onerror="window.__pwned=1">')
    expect(reply.locator("mark")).to_contain_text("*not bold* and [a link](javascript:window.__pwned=1)")
    ask(page, '<img src=x onerror="window.__pwned=2"> What was reported to the lighthouse keeper?')
    expect(page.locator("#vb-chat .vb-question").last).to_have_text(
        '<img src=x onerror="window.__pwned=2"> What was reported to the lighthouse keeper?')
    chat = page.locator("#vb-chat")
    for element in ("script", "img[src='x']", "a[href^='javascript']", "em"):
        assert chat.locator(element).count() == 0, element
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_abstention_reads_as_one_with_related_passages_marked(page, served):
    question = "Who is the king of France?"
    expected = served.qa.ask(question)
    assert expected.abstained
    reply = ask(page, question)
    expect(reply.locator(".vb-abstain")).to_have_text(expected.answer.splitlines()[0])
    expect(reply.locator("blockquote")).to_have_count(0)  # nothing is presented as the answer
    expect(reply.locator(".vb-card")).to_have_count(len(expected.citations))
    expect(reply.locator(".vb-card .vb-related")).to_have_count(len(expected.citations))
    expect(reply.locator(".vb-related").first).to_have_text("Related, not an answer")
    assert reply.locator(".vb-error").count() == 0


def test_examples_come_from_the_corpus_and_get_answers(page, served):
    examples = page.locator("#vb-chat button.example")
    expect(examples.first).to_be_visible(timeout=ANSWER_WAIT_MS)
    store = served.qa.store()
    names = {part.casefold() for c in store.chunks for part in (c.section or "").split(" > ") if part}
    names |= {title.casefold() for title in store.titles.values()}
    texts = examples.all_inner_texts()
    topics = [re.search(r" about (.+)\?$", text).group(1).casefold() for text in texts]
    assert topics and all(any(topic in name for name in names) for topic in topics), texts
    started = time.perf_counter()
    examples.first.click()
    reply = page.locator("#vb-chat .vb-reply").first
    expect(reply.locator("blockquote.vb-primary")).to_be_visible(timeout=ANSWER_WAIT_MS)
    LATENCIES.append((texts[0], time.perf_counter() - started))


def test_empty_and_overlong_questions(page, served):
    page.locator("#vb-question textarea").fill("   ")
    page.locator("#vb-question textarea").press("Enter")
    expect(page.get_by_text("Please type a question about the documents.")).to_be_visible(timeout=30_000)
    assert page.locator("#vb-chat .vb-question").count() == 0

    limit = served.qa.settings.answer.max_question_chars
    reply = ask(page, "What is the Young Southeast Asian Leaders Initiative? " + "more words " * limit)
    expect(reply.locator(".vb-notice")).to_contain_text(f"only the first {limit:,} were used")


def test_rebuild_button_and_an_index_built_elsewhere_are_picked_up(page, served, real_embedder):
    corpus = served.qa.settings.corpus
    (corpus / "kite-festival.md").write_text(
        "# Kite festival\n\nThe kite festival on the river bank draws 4,000 visitors every spring.\n", encoding="utf-8")
    page.reload()
    expect(page.locator("#vb-status .vb-warn")).to_contain_text("kite-festival.md", timeout=60_000)

    page.locator("#vb-rebuild").click()
    expect(page.locator("#vb-status .vb-report")).to_contain_text("1 added", timeout=ANSWER_WAIT_MS)
    expect(page.locator("#vb-status .vb-warn")).to_have_count(0)
    expect(ask(page, "How many visitors does the kite festival draw?")).to_contain_text("4,000 visitors")

    (corpus / "lantern-parade.md").write_text(
        "# Lantern parade\n\nThe lantern parade leaves the old harbour at nine in the evening.\n", encoding="utf-8")
    elsewhere = QA(served.qa.settings, real_embedder).build()  # as `python -m app build` would
    assert elsewhere.added == 1
    expect(ask(page, "When does the lantern parade leave the old harbour?")).to_contain_text("nine in the evening")
    documents = served.qa.store().manifest["counts"]["documents"]
    expect(page.locator("#vb-status .vb-indexed")).to_contain_text(f"{documents} documents")
