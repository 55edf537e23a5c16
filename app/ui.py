"""The chat page in the browser (Gradio): a thin layer over `QA.ask`, `QA.build` and `uploads.add_files`.

Callbacks only move values between the page and the core; the HTML comes from `render`, the example
questions from `examples`. Errors from the core become a message on the page (and a clear error for API
clients), never a traceback. Offline: no analytics, system fonts only, nothing fetched from elsewhere. The
conversation is kept in the browser (localStorage), so a reload shows it again and follow-ups still work.
`server.create_server` mounts this page beside the REST API.

The Gradio API endpoint `/ask` takes a question and the conversation's earlier questions and returns the
answer JSON of the contract: `gradio_client.Client(url).predict("question", [], api_name="/ask")`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402

from .documents import SUFFIXES  # noqa: E402
from .errors import VerbatimError  # noqa: E402
from .examples import example_questions  # noqa: E402
from .qa import QA  # noqa: E402
from .render import (answer_html, build_summary, library_html, message_html, question_html, status_html,  # noqa: E402
                     upload_summary)
from .status import index_status  # noqa: E402
from .uploads import add_files  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "Verbatim"
EMPTY_QUESTION = "Please type a question about the documents."
INTERNAL_ERROR = "Something went wrong inside Verbatim; the details are in the server log. Please try again."
KEPT_MESSAGES = 60  # the conversation kept in the browser: the last 30 questions and answers
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
PLACEHOLDER = ("<div class='vb-placeholder'><b>Ask anything about the documents.</b><br>"
               "Every answer is an exact quote, with the place it comes from.</div>")
THEME = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS).set(
    body_text_color_subdued="*neutral_600", body_text_color_subdued_dark="*neutral_300",  # >= 4.5:1 contrast
    input_placeholder_color="*neutral_500", input_placeholder_color_dark="*neutral_400",
    block_info_text_color="*neutral_600", block_info_text_color_dark="*neutral_300",
    button_primary_background_fill="*primary_700", button_primary_background_fill_hover="*primary_800",
    button_primary_text_color="white",
)

# The phone layout's outer padding (Gradio scopes the `css` below inside its container, this is outside it);
# copy buttons; plain-text accessible labels for chat messages (Gradio labels them with the message's HTML);
# the newest question scrolled to the top of the chat when it is asked and when its answer arrives, so
# the question and the start of its answer are in view (Gradio's autoscroll would show the end).
HEAD = r"""<style>@media (max-width: 640px) {.gradio-container .main.app {padding: .5rem .5rem 0 !important}}</style>
<script>
(() => {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button.vb-copy");
    if (!button) return;
    event.preventDefault();
    event.stopPropagation();
    const text = button.nextElementSibling.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.firstChild.textContent = "Copied";
    setTimeout(() => { button.firstChild.textContent = "Copy"; }, 2000);
  }, true);
  const plain = (element) => {
    const parts = element.querySelectorAll(".vb-question, .vb-notice, .vb-abstain, .vb-quote, .vb-message");
    const text = [...(parts.length ? parts : [element])].map((part) => {
      const copy = part.cloneNode(true);
      copy.querySelectorAll("button").forEach((button) => button.remove());
      return copy.textContent;
    }).join(" ");
    return text.replace(/\s+/g, " ").trim();
  };
  let asked = 0, answered = 0;
  const update = () => {
    const chat = document.getElementById("vb-chat");
    if (!chat) return;
    for (const element of chat.querySelectorAll("[aria-label]")) {
      const label = element.getAttribute("aria-label");
      if (label.includes("'s message: ")) element.dataset.vbUser = label.startsWith("user's message") ? "1" : "";
      if (element.dataset.vbUser === undefined) continue;
      const plainLabel = (element.dataset.vbUser ? "Your question: " : "Answer: ") + plain(element);
      if (label !== plainLabel) element.setAttribute("aria-label", plainLabel);
    }
    const questions = chat.querySelectorAll(".vb-question");
    const replies = chat.querySelectorAll(".vb-reply, .vb-message");
    if (questions.length !== asked || replies.length !== answered) {
      const grew = questions.length > asked || replies.length > answered;
      asked = questions.length;
      answered = replies.length;
      const last = questions[questions.length - 1];
      const box = last && last.closest(".panel-wrap, .bubble-wrap");
      if (grew && box) {
        const row = last.closest(".message-row") || last;
        box.scrollTo({top: box.scrollTop + row.getBoundingClientRect().top - box.getBoundingClientRect().top - 8});
      }
    }
  };
  new MutationObserver(update).observe(document.documentElement,
    {subtree: true, childList: true, attributes: true, attributeFilter: ["aria-label"]});
})();
</script>"""

CSS = """
:root {--vb-amber: #92400e; --vb-green: #065f46; --vb-red: #b91c1c; --vb-link: #1d4ed8}
.dark {--vb-amber: #fbbf24; --vb-green: #6ee7b7; --vb-red: #fca5a5; --vb-link: #93c5fd}
.vb-top {align-items: center; flex-wrap: wrap; gap: .25rem 1.5rem}
.vb-top > * {min-width: min(100%, 18rem) !important}
.vb-header h1 {margin: 0; font-size: 1.5rem; letter-spacing: -0.01em; line-height: 1.2}
.vb-header p {margin: .1rem 0 0; color: var(--body-text-color-subdued); font-size: .9rem}
.vb-status {font-size: .85rem; color: var(--body-text-color-subdued); display: flex; flex-direction: column; gap: .3rem}
.vb-warn {color: var(--vb-amber); background: rgba(245, 158, 11, .14); border-radius: 6px; padding: .35rem .6rem}
.vb-report {color: var(--vb-green); background: rgba(16, 185, 129, .12); border-radius: 6px; padding: .35rem .6rem}
.vb-skipped {font-size: .82rem}
#vb-chat {height: calc(100dvh - 292px) !important; min-height: 260px; flex: none !important}
#vb-chat .message-row.panel {padding-top: .75rem !important; padding-bottom: .75rem !important}
.vb-actions {gap: .5rem}
.vb-actions > button {flex: none !important; min-width: 0 !important; width: auto !important}
#vb-chat .prose.chatbot.md {opacity: 1}
#vb-chat .scroll-down-button-container {display: none}
.vb-placeholder {text-align: center; color: var(--body-text-color-subdued); line-height: 1.6}
.vb-question {white-space: pre-wrap; max-height: 10em; overflow-y: auto}
.vb-reply {display: flex; flex-direction: column; gap: .5rem}
.vb-reply > *, .vb-sources > *, .vb-card > * {margin-top: 0 !important; margin-bottom: 0 !important}
.vb-reply blockquote.vb-quote {margin: 0; padding: .5rem .85rem; border-left: 4px solid var(--vb-c);
  background: var(--vb-bg); border-radius: 0 8px 8px 0; font-size: 1rem; line-height: 1.55; color: inherit}
.vb-reply blockquote.vb-primary {font-size: 1.08rem}
.vb-answer {font-weight: 700}
.vb-marker {font-weight: 700; color: var(--vb-c) !important; text-decoration: none !important; white-space: nowrap}
.vb-copy {font: inherit; font-size: .78rem; font-weight: 600; line-height: 1.4; margin-left: .3rem;
  padding: .05rem .55rem;
  border: 1px solid var(--border-color-primary); border-radius: 999px; background: var(--background-fill-primary);
  color: var(--body-text-color); cursor: pointer; vertical-align: .08em}
.vb-copy:hover, .vb-copy:focus-visible {border-color: var(--vb-c)}
.vb-copy-text {display: none}
.vb-sr {position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap}
.vb-also, .vb-related-label {font-size: .75rem; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;
  color: var(--body-text-color-subdued)}
.vb-related-label {color: var(--vb-amber)}
.vb-abstain {margin: 0; font-weight: 600}
.vb-notice {font-size: .85rem; color: var(--vb-amber); background: rgba(245, 158, 11, .14); border-radius: 6px;
  padding: .3rem .6rem}
.vb-sources {display: grid; gap: .5rem; margin-top: .25rem}
.vb-card {border: 1px solid var(--border-color-primary); border-left: 4px solid var(--vb-c); border-radius: 8px;
  padding: .55rem .8rem; background: var(--background-fill-primary); transition: box-shadow .15s}
.vb-card-related {border-left-style: dashed}
.vb-card:target {box-shadow: 0 0 0 2px var(--vb-c)}
.vb-card-head {display: flex; align-items: center; gap: .5rem; font-weight: 600; line-height: 1.3}
.vb-num {flex: none; display: inline-flex; align-items: center; justify-content: center; width: 1.45rem;
  height: 1.45rem; border-radius: 50%; background: var(--vb-c); color: #fff; font-size: .8rem}
.vb-related {margin-left: auto; flex: none; font-size: .7rem; font-weight: 700; text-transform: uppercase;
  letter-spacing: .04em; color: var(--vb-amber); background: rgba(245, 158, 11, .18); padding: .1rem .5rem;
  border-radius: 999px}
.vb-where {font-size: .8rem; color: var(--body-text-color-subdued); margin: .2rem 0 .4rem 1.95rem}
.vb-doc {font-family: var(--font-mono); font-size: .75rem}
.vb-passage {margin: 0 0 0 1.95rem !important; font-size: .9rem; line-height: 1.55}
.vb-passage mark {background: var(--vb-mark); color: inherit; padding: .05em .15em; border-radius: 3px}
#vb-chat a.vb-open, .vb-library a {color: var(--vb-link)}
.vb-open {display: inline-block; margin: .35rem 0 0 1.95rem !important; font-size: .85rem}
.vb-message.vb-error {color: var(--vb-red)}
.vb-side-head {margin: 0 0 .5rem; font-size: 1.2rem}
.vb-library {font-size: .9rem; display: flex; flex-direction: column; gap: .4rem}
.vb-library p, .vb-library ul {margin: 0}
.vb-library ul {padding-left: 1.1rem; display: flex; flex-direction: column; gap: .45rem}
.vb-library li > * {display: block}
.vb-lib-head {margin: .4rem 0 0; font-size: .95rem}
.vb-lib-title {font-weight: 600}
.vb-lib-facts, .vb-lib-built, .vb-hint {color: var(--body-text-color-subdued); font-size: .82rem}
.vb-hint {margin: .25rem 0 .5rem}
.vb-c1 {--vb-c: #2563eb; --vb-bg: rgba(37, 99, 235, .07); --vb-mark: rgba(37, 99, 235, .2)}
.vb-c2 {--vb-c: #047857; --vb-bg: rgba(5, 150, 105, .07); --vb-mark: rgba(5, 150, 105, .2)}
.vb-c3 {--vb-c: #c2410c; --vb-bg: rgba(194, 65, 12, .07); --vb-mark: rgba(194, 65, 12, .2)}
.vb-c4 {--vb-c: #7c3aed; --vb-bg: rgba(124, 58, 237, .07); --vb-mark: rgba(124, 58, 237, .2)}
.vb-c5 {--vb-c: #be185d; --vb-bg: rgba(190, 24, 93, .07); --vb-mark: rgba(190, 24, 93, .2)}
.vb-c6 {--vb-c: #0e7490; --vb-bg: rgba(14, 116, 144, .07); --vb-mark: rgba(14, 116, 144, .2)}
.dark .vb-c1 {--vb-c: #93c5fd} .dark .vb-c2 {--vb-c: #6ee7b7} .dark .vb-c3 {--vb-c: #fdba74}
.dark .vb-c4 {--vb-c: #c4b5fd} .dark .vb-c5 {--vb-c: #f9a8d4} .dark .vb-c6 {--vb-c: #67e8f9}
.dark .vb-num {color: #111827}
@media (max-width: 640px) {
  #vb-chat {height: calc(100dvh - 325px) !important}
  .vb-where, .vb-passage, .vb-open {margin-left: 0 !important}
  .vb-header p {display: none}
  .vb-reply blockquote.vb-quote {padding: .45rem .6rem}
  .vb-card {padding: .5rem .6rem}
  #vb-chat .message-row.panel {padding-left: .6rem !important; padding-right: .6rem !important}
}
"""


def create_app(qa: QA, allow_upload: bool = True) -> gr.Blocks:
    """The page and the `/ask` API endpoint, over one `QA` shared by every browser session."""
    examples_of_index: dict[str, list[dict]] = {}  # the current index's only

    def current_status(report: str | None = None, failed: bool = False) -> tuple[str, str, str]:
        """The status line's HTML, the documents panel's, and the index folder they describe."""
        try:
            status = index_status(qa.settings)
        except VerbatimError as exc:
            return status_html(None, str(exc), report, failed), library_html(None, str(exc)), ""
        return status_html(status, report=report, failed=failed), library_html(status), status["index"]

    def examples():
        """Example questions for the current index, worked out once per index."""
        try:
            folder = str(qa.store().folder)
            if folder not in examples_of_index:
                found = [{"text": q} for q in example_questions(qa)]
                examples_of_index.clear()
                examples_of_index[folder] = found
            return gr.Chatbot(examples=examples_of_index[folder] or None)
        except VerbatimError:
            return gr.Chatbot(examples=None)

    def restore(saved):
        """The conversation this browser kept, shown again after a reload, and the page's status."""
        chat, questions = _conversation(saved)
        status, library, shown = current_status()
        return status, library, shown, chat, questions

    def respond(message: str, chat: list, questions: list[str], shown: str):
        """Show the question at once, then the answer; the conversation's earlier questions go along."""
        if not (message or "").strip():
            gr.Info(EMPTY_QUESTION)
            yield message, chat, questions, shown, gr.skip(), gr.skip(), gr.skip()
            return
        chat = [*chat, {"role": "user", "content": question_html(message)}]
        yield "", chat, questions, shown, gr.skip(), gr.skip(), gr.skip()
        try:
            answer = qa.ask(message, questions)
            reply = answer_html(answer, turn=len(questions) + 1)
            questions = [*questions, answer.question]
        except VerbatimError as exc:
            reply = message_html(f"I couldn't answer that: {exc}", "error")
        except Exception:
            log.exception("answering %r failed", message)
            reply = message_html(INTERNAL_ERROR, "error")
        chat = [*chat, {"role": "assistant", "content": reply}]
        status = library = gr.skip()
        if _index_folder(qa) != shown:  # another process published a new build: say what is indexed now
            status, library, shown = current_status()
        yield "", chat, questions, shown, status, library, {"chat": chat[-KEPT_MESSAGES:], "questions": questions}

    def respond_to_example(chat: list, questions: list[str], shown: str, selected: gr.SelectData):
        yield from respond(selected.value["text"], chat, questions, shown)

    def build_or_fail(failed: str):
        """(the build report, None), or (None, the status saying `failed` and why): no traceback on the page."""
        try:
            report = qa.build()
            qa.prepare()
            return report, None
        except VerbatimError as exc:
            return None, current_status(f"{failed}: {exc}", failed=True)
        except Exception:
            log.exception(failed)
            return None, current_status(f"{failed}. {INTERNAL_ERROR}", failed=True)

    def rebuild() -> tuple[str, str, str]:
        report, failure = build_or_fail("Rebuild failed")
        return failure or current_status(build_summary(report))

    def add_documents(files: list[str] | None) -> tuple[str, str, str]:
        """Copy the uploaded files into the corpus and index them, so they can be asked about at once."""
        added = add_files(qa.settings.corpus, [(Path(f).name, Path(f)) for f in files or []],
                          int(qa.settings.max_file_mb * 1e6))
        report = None
        if any(a.path and not a.duplicate_of for a in added):
            report, failure = build_or_fail("The files were added but the index was not rebuilt")
            if failure:
                return failure
        return current_status(*upload_summary(added, report))

    def ask(question: str, history: list[str] | None = None) -> dict:
        """Answer a question with exact quotes and citations from the documents.

        Parameters:
            question: the question, in plain words
            history: the conversation's earlier questions, oldest first, so that follow-ups can be asked
        Returns:
            the answer JSON: question, abstained, answer, citations (id, quote, doc, title, section, start, end, score)
        """
        try:
            return qa.ask(question, [str(q) for q in history or []]).to_json()
        except VerbatimError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_height=True) as app:
        saved = gr.BrowserState({"chat": [], "questions": []}, storage_key="verbatim-conversation")
        questions = gr.State([])
        shown = gr.State("")
        with gr.Sidebar(open=False, position="right", label="Documents", elem_id="vb-sidebar") as sidebar:
            gr.HTML("<h2 class='vb-side-head'>Documents</h2>")
            library = gr.HTML("", elem_id="vb-library")
            if allow_upload:
                upload = gr.UploadButton(
                    "Add documents", file_count="multiple", file_types=sorted(SUFFIXES), variant="primary",
                    size="sm", elem_id="vb-upload")
                gr.HTML(f"<p class='vb-hint'>.txt, .md, .html or .pdf, up to {qa.settings.max_file_mb:g} MB each. "
                        "They are copied into the documents folder and indexed at once.</p>")
            else:
                gr.HTML("<p class='vb-hint'>Adding documents from the page is off because this server can be "
                        "reached from other machines; start it with <code>--allow-upload</code> to allow it.</p>")
            rebuild_button = gr.Button("Rebuild index", variant="secondary", size="sm", elem_id="vb-rebuild")
        with gr.Row(elem_classes="vb-top"):
            gr.HTML(f"<div class='vb-header'><h1>{TITLE}</h1><p>Answers from your documents in their own words: "
                    "exact quotes, each with its source.</p></div>")
            status = gr.HTML("", elem_id="vb-status")
        chat = gr.Chatbot(show_label=False, elem_id="vb-chat", scale=1, height=None,
                          autoscroll=False, layout="panel", placeholder=PLACEHOLDER, sanitize_html=True,
                          render_markdown=True, latex_delimiters=[], feedback_options=None, buttons=[],
                          allow_tags=False)
        box = gr.Textbox(placeholder="Ask a question about the documents and press Enter", show_label=False,
                         elem_id="vb-question", lines=1, max_lines=6, submit_btn="Ask", autofocus=True)
        with gr.Row(elem_classes="vb-actions"):
            new = gr.Button("New conversation", variant="secondary", size="sm", elem_id="vb-new")
            open_documents = gr.Button("Documents", variant="secondary", size="sm", elem_id="vb-documents")

        private = dict(api_visibility="private", show_progress="hidden")
        turn_io = dict(outputs=[box, chat, questions, shown, status, library, saved], **private)
        box.submit(respond, [box, chat, questions, shown], **turn_io)
        chat.example_select(respond_to_example, [chat, questions, shown], **turn_io)
        new.click(lambda: ("", [], [], {"chat": [], "questions": []}), None, [box, chat, questions, saved], **private)
        chat.clear(lambda: ([], {"chat": [], "questions": []}), None, [questions, saved], **private)
        open_documents.click(lambda: gr.Sidebar(open=True), None, sidebar, **private)
        after_build = dict(fn=examples, inputs=None, outputs=chat, **private)
        rebuild_button.click(
            lambda: gr.Button("Rebuilding…", interactive=False), None, rebuild_button, **private,
        ).then(rebuild, None, [status, library, shown], **private).then(
            lambda: gr.Button("Rebuild index", interactive=True), None, rebuild_button, **private,
        ).then(**after_build)
        if allow_upload:
            upload.upload(add_documents, upload, [status, library, shown], **private).then(**after_build)
        app.load(restore, saved, [status, library, shown, chat, questions], **private).then(**after_build)
        gr.api(ask, api_name="ask", concurrency_limit=2)  # QA.ask is thread-safe; 2 cores
    return app


def _conversation(saved) -> tuple[list[dict], list[str]]:
    """The kept chat and questions, or an empty conversation when what the browser sent is not one."""
    try:
        chat = [{"role": m["role"], "content": m["content"]} for m in saved["chat"]
                if m["role"] in ("user", "assistant") and isinstance(m["content"], str)]
        questions = [q for q in saved["questions"] if isinstance(q, str)]
    except (KeyError, TypeError):
        return [], []
    return chat, questions


def _index_folder(qa: QA) -> str:
    try:
        return str(qa.store().folder)
    except VerbatimError:
        return ""
