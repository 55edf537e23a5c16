"""The chat page as a person uses it: headless Chromium, on a desktop (1280x900) and a phone (390x844)
viewport, against the app served as `python -m app serve` serves it, over the seed corpus plus one document
full of markup, with the real model.

Waits are for what appears on the page, never for network idle (Gradio keeps its connections open). Every
test also checks that the page asked nothing of any host but 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from app.examples import EXAMPLES_FILE
from app.qa import QA
from app.render import citation_text
from app.settings import Settings
from eval.questions import load_questions
from tests.conftest import ROOT, ServedAPI

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
ANSWER_WAIT_MS = 90_000  # the machine is shared; a slow answer is not a failure here
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SCREENSHOTS = {"desktop": ROOT / "docs" / "screenshot.png", "phone": ROOT / "docs" / "screenshot-phone.png"}
MARKUP_DOC = """# Notice board incident

## What the harbour office pasted

The harbour office pasted a strange snippet into the notice board page:
<script>window.__pwned=1</script> followed by the image tag
<img src=x onerror="window.__pwned=1"> and the words *not bold* and [a link](javascript:window.__pwned=1).

The snippet was reported to the lighthouse keeper on Tuesday.
"""
LOCAL = ("http://127.0.0.1:", "data:", "blob:")  # nothing else may be fetched
STATUS_LOG = """
window.__status = [];
new MutationObserver(() => {
  const status = document.getElementById("vb-status");
  const text = status ? status.innerText : "";
  if (window.__status[window.__status.length - 1] !== text) window.__status.push(text);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
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


def open_page(browser, served, viewport=DESKTOP):
    """A fresh browser session (its own storage) on the chat page, textbox ready, and the hosts it asked."""
    context = browser.new_context(viewport=viewport, permissions=["clipboard-read", "clipboard-write"])
    context.add_init_script(STATUS_LOG)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    context.on("page", lambda other: other.on("request", lambda request: requests.append(request.url)))
    page.goto(served.url)
    expect(page.locator("#vb-question textarea")).to_be_visible(timeout=60_000)
    return page, requests


@pytest.fixture(params=["desktop", "phone"])
def any_page(request, browser, served):
    page, requests = open_page(browser, served, DESKTOP if request.param == "desktop" else PHONE)
    yield request.param, page
    page.context.close()
    assert requests and not [url for url in requests if not url.startswith(LOCAL)]


@pytest.fixture
def page(browser, served):
    page, requests = open_page(browser, served)
    yield page
    page.context.close()
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


def headline(answer) -> str:
    """What a reply shows first: its first quote, or the abstention."""
    return answer.answer.splitlines()[0] if answer.abstained else fold(answer.citations[0].quote)


def follow_up(qa: QA) -> tuple[str, str]:
    """A conversation of the seed questions whose follow-up is answered differently without its first turn."""
    for q in load_questions(ROOT / "eval" / "questions.jsonl"):
        if len(q.history) == 1 and headline(qa.ask(q.question, q.history)) != headline(qa.ask(q.question)):
            return q.history[0], q.question
    pytest.fail("no seed conversation needs its history")


def test_the_question_and_the_start_of_its_answer_are_in_view(any_page, served):
    kind, page = any_page
    chat = page.locator("#vb-chat")
    viewport = page.viewport_size
    assert chat.bounding_box()["height"] >= 0.55 * viewport["height"]  # the chat uses the window's height
    expect(page.locator("#vb-question textarea")).to_be_in_viewport(ratio=1)
    assert page.evaluate("document.scrollingElement.scrollHeight") <= viewport["height"] + 1  # no page scroll

    questions = ["What did Japan propose on artificial intelligence?", "What does Japan say about North Korea?",
                 "What did the ASEAN Member States welcome?"]
    for question in questions:
        reply = ask(page, question)
        expect(page.locator("#vb-chat .vb-question").last).to_be_in_viewport(ratio=1)
        expect(reply.locator(".vb-quote, .vb-abstain").first).to_be_in_viewport()
    page.locator("#vb-chat .panel-wrap").evaluate("e => e.scrollTo(0, 0)")  # scrolled up to read an old answer
    expected = served.qa.ask("When did North Korea launch a ballistic missile?")
    reply = ask(page, expected.question)
    expect(page.locator("#vb-chat .vb-question").last).to_be_in_viewport(ratio=1)
    quote = reply.locator("blockquote.vb-primary")
    expect(quote).to_be_in_viewport()
    expect(quote).to_contain_text("October 22")
    expect(quote).to_contain_text(f"“{fold(expected.citations[0].quote)}” [1]")
    if kind == "phone":  # cards keep most of the width for their text
        assert reply.locator(".vb-passage").first.bounding_box()["width"] >= 0.7 * viewport["width"]
    SCREENSHOTS[kind].parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS[kind])


def test_markers_lead_to_source_cards_with_the_quote_marked_and_the_answer_bold(page, served):
    question = "What did Japan propose on artificial intelligence?"
    expected = served.qa.ask(question)
    reply = ask(page, question)
    expect(reply.locator("blockquote.vb-quote").first).to_contain_text("Artificial Intelligence")
    expect(reply.locator("a.vb-marker")).to_have_count(len(expected.citations))
    for citation in expected.citations:
        marker = reply.locator("a.vb-marker").nth(citation.id - 1)
        expect(marker).to_have_text(f"[{citation.id}]")
        card = reply.locator(marker.get_attribute("href"))
        expect(card.locator(".vb-num")).to_have_text(str(citation.id))
        expect(card.locator(".vb-title")).to_have_text(citation.title)
        expect(card.locator("mark")).to_have_text(fold(citation.quote))
        assert fold(card.locator(".vb-passage").inner_text()).strip("… ") in fold(citation.context)
        assert marker.evaluate("e => getComputedStyle(e).color") == \
            card.locator(".vb-num").evaluate("e => getComputedStyle(e).backgroundColor")  # one colour per source
        if citation.answer:
            answer_text = fold(served.qa.documents.get(citation.doc, served.qa.store().manifest["files"][
                citation.doc]["sha256"]).text[citation.answer[0]:citation.answer[1]])
            expect(reply.locator("blockquote.vb-quote").nth(citation.id - 1).locator("strong.vb-answer")).to_have_text(
                answer_text)
    marker = reply.locator("blockquote a.vb-marker").first
    marker.click()
    assert reply.locator(marker.get_attribute("href")).evaluate("e => e.matches(':target')")


def test_copy_button_copies_the_quote_with_its_citation(page, served):
    expected = served.qa.ask("When did North Korea launch a ballistic missile?")
    reply = ask(page, expected.question)
    button = reply.locator("blockquote.vb-primary button.vb-copy")
    expect(button).to_have_text(re.compile(r"^Copy"))
    button.click()
    expect(button).to_have_text(re.compile(r"^Copied"))
    copied = page.evaluate("navigator.clipboard.readText()")
    first = expected.citations[0]
    assert copied == citation_text(first)
    assert fold(first.quote) in copied and first.title in copied and first.doc in copied


def test_open_the_whole_document_at_the_quote_with_it_highlighted(any_page, served):
    kind, page = any_page
    expected = served.qa.ask("What is Japan's position on Myanmar?")
    reply = ask(page, expected.question)
    first = expected.citations[0]
    with page.expect_popup() as opened:
        reply.locator(".vb-card").first.locator("a.vb-open").click()
    document = opened.value
    mark = document.locator("mark#vb-quote")
    expect(mark).to_have_text(first.quote)
    expect(mark).to_be_in_viewport()  # opened at the cited place
    text = served.qa.documents.get(first.doc, served.qa.store().manifest["files"][first.doc]["sha256"]).text
    assert fold(document.locator(".text").inner_text()) == fold(text)  # the whole document
    expect(document.locator("h1")).to_have_text(first.title)
    if first.answer:
        expect(mark.locator("strong")).to_have_text(text[first.answer[0]:first.answer[1]])
    bad = document.context.new_page()
    bad.goto(served.url + "document?doc=../../etc/passwd")
    expect(bad.locator("h1")).to_have_text("Document not available")
    bad.close()
    document.close()


def test_documents_panel_lists_what_is_indexed_and_what_was_skipped(page, served):
    corpus = served.qa.settings.corpus
    (corpus / "minutes.docx").write_bytes(b"PK\x03\x04 not a document Verbatim reads")
    try:
        served.qa.build()
        page.reload()
        page.locator("#vb-documents").click()
        library = page.locator("#vb-library")
        status = served.qa.store().manifest
        for path, info in status["files"].items():
            entry = library.locator("li", has_text=path)
            expect(entry.locator(".vb-lib-title")).to_have_text(info["title"])
            expect(entry).to_contain_text(f"{info['chunks']} passage")
        expect(library.locator(".vb-lib-skipped li", has_text="minutes.docx")).to_contain_text("unsupported format")
        expect(library.locator(".vb-lib-built")).to_contain_text("Index built")
    finally:
        (corpus / "minutes.docx").unlink()
        served.qa.build()


def test_added_documents_are_answered_at_once(page, served, tmp_path):
    upload = tmp_path / "Kite festival (2025).md"
    upload.write_text("# Kite festival\n\nThe kite festival on the river bank draws 4,000 visitors every spring.\n",
                      encoding="utf-8")
    page.locator("#vb-documents").click()
    page.locator("#vb-sidebar input[type=file]").set_input_files(upload)
    report = page.locator("#vb-status .vb-report")
    expect(report).to_contain_text("added as Kite-festival-2025.md and indexed", timeout=ANSWER_WAIT_MS)
    assert (served.qa.settings.corpus / "Kite-festival-2025.md").read_bytes() == upload.read_bytes()
    expect(page.locator("#vb-library")).to_contain_text("Kite-festival-2025.md")
    expect(ask(page, "How many visitors does the kite festival draw?").locator("blockquote.vb-primary")).to_contain_text(
        "4,000 visitors")


def test_reload_keeps_the_conversation_and_its_follow_ups(page, served):
    first, second = follow_up(served.qa)
    ask(page, first)
    page.reload()
    expect(page.locator("#vb-chat .vb-question")).to_have_text([first], timeout=60_000)
    expect(page.locator("#vb-chat .vb-reply")).to_have_count(1)
    reply = ask(page, second)  # still a follow-up of the first question
    expect(reply).to_contain_text(headline(served.qa.ask(second, [first])))

    page.locator("#vb-new").click()
    expect(page.locator("#vb-chat .vb-reply")).to_have_count(0)
    page.reload()
    expect(page.locator("#vb-status .vb-indexed")).to_be_visible(timeout=60_000)
    expect(page.locator("#vb-chat .vb-question")).to_have_count(0)  # a new conversation stays new
    expect(ask(page, second)).to_contain_text(headline(served.qa.ask(second)))


def test_chat_messages_have_plain_text_accessible_labels(any_page, served):
    _, page = any_page
    expected = served.qa.ask("What did Japan propose on artificial intelligence?")
    ask(page, expected.question)
    ask(page, "Who is the king of France?")
    labels = page.locator("[aria-label]").evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert labels and not [label for label in labels if re.search(r"<\w|&lt;|class=", label)], labels
    answer = page.locator("#vb-chat [aria-label^='Answer: ']").first
    label = answer.get_attribute("aria-label")
    assert fold(expected.citations[0].quote) in label and "Copy" not in label
    assert page.locator("#vb-chat [aria-label^='Your question: ']").first.get_attribute("aria-label") == \
        f"Your question: {expected.question}"


CONTRAST = """() => {
  const rgba = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const background = (el) => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor); if (c && c[3] > 0) layers.push(c); if (c && c[3] >= 1) break; }
    return layers.reverse().reduce((under, layer) => over(layer, under), [255, 255, 255, 1]); };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    if (!box.width || !box.height || box.right <= 0 || box.left >= innerWidth || style.visibility !== "visible"
        || el.closest("[hidden], .vb-copy-text, .vb-sr")) continue;
    let opacity = 1; for (let e = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    const color = rgba(style.color); if (!color) continue;
    const bg = background(el), fg = over([color[0], color[1], color[2], color[3] * opacity], bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    out.push({text: el.textContent.trim().slice(0, 40), cls: el.className.toString().slice(0, 40), ratio: (a + 0.05) / (b + 0.05)});
  }
  return out;
}"""


def test_text_contrast_is_at_least_4_5_to_1(any_page, served):
    _, page = any_page
    ask(page, "What did Japan propose on artificial intelligence?")
    ask(page, "Who is the king of France?")  # the abstention's amber labels too
    measured = page.evaluate(CONTRAST)
    page.locator("#vb-documents").click()  # and the documents panel
    expect(page.locator("#vb-library .vb-lib-title").first).to_be_in_viewport()
    measured += page.evaluate(CONTRAST)
    assert len(measured) > 20
    low = [m for m in measured if m["ratio"] < 4.5]
    assert not low, low


def test_status_never_flashes_a_missing_index_while_loading(page, served):
    counts = served.qa.store().manifest["counts"]
    expect(page.locator("#vb-status .vb-indexed")).to_contain_text(
        f"{counts['documents']} documents · {counts['chunks']} passages", timeout=60_000)
    expect(page.locator("#vb-status")).to_contain_text("all-MiniLM-L6-v2")
    shown = page.evaluate("window.__status")
    assert not [text for text in shown if "Rebuild index" in text or "Reading" in text or "No index" in text], shown


def test_examples_are_answered_by_the_quote_they_promise(page, served):
    promised = {row["question"]: row["answer"] for row in map(json.loads, (
        served.qa.settings.corpus / EXAMPLES_FILE).read_text(encoding="utf-8").splitlines()) if row}
    examples = page.locator("#vb-chat button.example")
    expect(examples.first).to_be_visible(timeout=ANSWER_WAIT_MS)
    texts = examples.all_inner_texts()
    assert len(texts) >= 2 and all(text in promised for text in texts), texts
    for n, text in enumerate(texts):
        if n:
            page.locator("#vb-new").click()
            expect(examples.first).to_be_visible(timeout=30_000)
        started = time.perf_counter()
        examples.nth(n).click()
        quote = page.locator("#vb-chat .vb-reply blockquote.vb-primary").first
        expect(quote).to_contain_text(promised[text], timeout=ANSWER_WAIT_MS)
        expect(page.locator("#vb-chat .vb-question").first).to_have_text(text)
        LATENCIES.append((text, time.perf_counter() - started))


def test_markup_in_documents_and_questions_shows_as_text_and_never_runs(page):
    reply = ask(page, "What snippet did the harbour office paste into the notice board page?")
    expect(reply.locator("blockquote.vb-primary")).to_contain_text("notice board page")
    with page.expect_popup() as opened:  # the whole document, markup and all, as text
        reply.locator(".vb-card").first.locator("a.vb-open").click()
    document = opened.value
    expect(document.locator(".text")).to_contain_text(
        '<script>window.__pwned=1</script> followed by the image tag\n<img src=x onerror="window.__pwned=1">')
    expect(document.locator(".text")).to_contain_text("*not bold* and [a link](javascript:window.__pwned=1)")
    assert document.locator("main script, main img, main a, main em").count() == 0
    assert document.evaluate("typeof window.__pwned") == "undefined"
    document.close()
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


def test_empty_and_overlong_questions(page, served):
    page.locator("#vb-question textarea").fill("   ")
    page.locator("#vb-question textarea").press("Enter")
    expect(page.get_by_text("Please type a question about the documents.")).to_be_visible(timeout=30_000)
    assert page.locator("#vb-chat .vb-question").count() == 0

    limit = served.qa.settings.answer.max_question_chars
    reply = ask(page, "What is the WA Project? " + "more words " * limit)
    expect(reply.locator(".vb-notice")).to_contain_text(f"only the first {limit:,} were used")


def test_rebuild_button_and_an_index_built_elsewhere_are_picked_up(page, served, real_embedder):
    corpus = served.qa.settings.corpus
    (corpus / "lantern-parade.md").write_text(
        "# Lantern parade\n\nThe lantern parade leaves the old harbour at nine in the evening.\n", encoding="utf-8")
    page.reload()
    expect(page.locator("#vb-status .vb-warn")).to_contain_text("lantern-parade.md", timeout=60_000)

    page.locator("#vb-documents").click()
    page.locator("#vb-rebuild").click()
    expect(page.locator("#vb-status .vb-report")).to_contain_text("1 added", timeout=ANSWER_WAIT_MS)
    expect(page.locator("#vb-status .vb-warn")).to_have_count(0)
    expect(ask(page, "When does the lantern parade leave the old harbour?")).to_contain_text("nine in the evening")

    (corpus / "boat-race.md").write_text(
        "# Boat race\n\nThe dragon boat race on the canal is won by the blue team every year.\n", encoding="utf-8")
    elsewhere = QA(served.qa.settings, real_embedder).build()  # as `python -m app build` would
    assert elsewhere.added == 1
    expect(ask(page, "Which team wins the dragon boat race?")).to_contain_text("blue team")
    documents = served.qa.store().manifest["counts"]["documents"]
    expect(page.locator("#vb-status .vb-indexed")).to_contain_text(f"{documents} documents")
