"""The chat page in the browser (Gradio): a thin layer over `QA.ask` and `QA.build`.

Callbacks only move values between the page and the core; the HTML comes from `render`, the example
questions from `examples`. Errors from the core become a message on the page (and a clear error for API
clients), never a traceback. Offline: no analytics, system fonts only, nothing fetched from elsewhere, and no
files served beyond Gradio's own.

The API endpoint `/ask` takes a question and returns the answer JSON of the contract:
`gradio_client.Client(url).predict("question", api_name="/ask")`.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402

from .errors import VerbatimError  # noqa: E402
from .examples import example_questions  # noqa: E402
from .qa import QA  # noqa: E402
from .render import answer_html, build_summary, message_html, question_html, status_html  # noqa: E402
from .status import index_status  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "Verbatim"
EMPTY_QUESTION = "Please type a question about the documents."
INTERNAL_ERROR = "Something went wrong inside Verbatim; the details are in the server log. Please try again."
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial",
                "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
PLACEHOLDER = ("<div class='vb-placeholder'><b>Ask anything about the documents.</b><br>"
               "Every answer is an exact quote, with the place it comes from.</div>")

CSS = """
:root {--vb-amber: #92400e; --vb-green: #065f46; --vb-red: #b91c1c}
.dark {--vb-amber: #fbbf24; --vb-green: #6ee7b7; --vb-red: #fca5a5}
.vb-header h1 {margin: 0; font-size: 1.7rem; letter-spacing: -0.01em}
.vb-header p {margin: .15rem 0 0; color: var(--body-text-color-subdued)}
.vb-status {font-size: .88rem; color: var(--body-text-color-subdued); display: flex; flex-direction: column; gap: .3rem}
.vb-warn {color: var(--vb-amber); background: rgba(245, 158, 11, .14); border-radius: 6px; padding: .35rem .6rem}
.vb-report {color: var(--vb-green); background: rgba(16, 185, 129, .12); border-radius: 6px; padding: .35rem .6rem}
.vb-skipped {font-size: .82rem}
.vb-placeholder {text-align: center; color: var(--body-text-color-subdued); line-height: 1.6}
.vb-question {white-space: pre-wrap; max-height: 10em; overflow-y: auto}
.vb-reply {display: flex; flex-direction: column; gap: .5rem}
.vb-reply > *, .vb-sources > *, .vb-card > * {margin-top: 0 !important; margin-bottom: 0 !important}
.vb-reply blockquote.vb-quote {margin: 0; padding: .5rem .85rem; border-left: 4px solid var(--vb-c);
  background: var(--vb-bg); border-radius: 0 8px 8px 0; font-size: 1rem; line-height: 1.55; color: inherit}
.vb-reply blockquote.vb-primary {font-size: 1.08rem}
.vb-marker {font-weight: 700; color: var(--vb-c) !important; text-decoration: none !important; white-space: nowrap}
.vb-also, .vb-related-label {font-size: .75rem; font-weight: 600; text-transform: uppercase; letter-spacing: .05em;
  color: var(--body-text-color); opacity: .65}
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
.vb-message.vb-error {color: var(--vb-red)}
.vb-c1 {--vb-c: #2563eb; --vb-bg: rgba(37, 99, 235, .07); --vb-mark: rgba(37, 99, 235, .2)}
.vb-c2 {--vb-c: #059669; --vb-bg: rgba(5, 150, 105, .07); --vb-mark: rgba(5, 150, 105, .2)}
.vb-c3 {--vb-c: #c2410c; --vb-bg: rgba(194, 65, 12, .07); --vb-mark: rgba(194, 65, 12, .2)}
.vb-c4 {--vb-c: #7c3aed; --vb-bg: rgba(124, 58, 237, .07); --vb-mark: rgba(124, 58, 237, .2)}
.vb-c5 {--vb-c: #be185d; --vb-bg: rgba(190, 24, 93, .07); --vb-mark: rgba(190, 24, 93, .2)}
.vb-c6 {--vb-c: #0e7490; --vb-bg: rgba(14, 116, 144, .07); --vb-mark: rgba(14, 116, 144, .2)}
"""


def create_app(qa: QA) -> gr.Blocks:
    """The page and the `/ask` API endpoint, over one `QA` shared by every browser session."""
    examples_of_index: dict[str, list[dict]] = {}  # the current index's only

    def current_status(report: str | None = None, failed: bool = False) -> tuple[str, str]:
        """The status line's HTML and the index folder it describes."""
        try:
            status = index_status(qa.settings)
        except VerbatimError as exc:
            return status_html(None, str(exc), report, failed), ""
        return status_html(status, report=report, failed=failed), status["index"]

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

    def respond(message: str, chat: list, questions: list[str], shown: str):
        """Show the question at once, then the answer; the conversation's earlier questions go along."""
        if not (message or "").strip():
            gr.Info(EMPTY_QUESTION)
            yield message, chat, questions, shown, gr.skip()
            return
        chat = [*chat, {"role": "user", "content": question_html(message)}]
        yield "", chat, questions, shown, gr.skip()
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
        status = gr.skip()
        if _index_folder(qa) != shown:  # another process published a new build: say what is indexed now
            status, shown = current_status()
        yield "", chat, questions, shown, status

    def respond_to_example(chat: list, questions: list[str], shown: str, selected: gr.SelectData):
        yield from respond(selected.value["text"], chat, questions, shown)

    def rebuild() -> tuple[str, str]:
        try:
            report = qa.build()
        except VerbatimError as exc:
            return current_status(f"Rebuild failed: {exc}", failed=True)
        except Exception:
            log.exception("rebuild failed")
            return current_status(f"Rebuild failed. {INTERNAL_ERROR}", failed=True)
        return current_status(build_summary(report))

    def ask(question: str) -> dict:
        """Answer one question with exact quotes and citations: the answer JSON of Verbatim's contract."""
        try:
            return qa.ask(question).to_json()
        except VerbatimError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        questions = gr.State([])
        shown = gr.State("")
        gr.HTML(f"<div class='vb-header'><h1>{TITLE}</h1><p>Answers from your documents in their own words: "
                "exact quotes, each with its source. Nothing is made up.</p></div>")
        status = gr.HTML(status_html(None, "Reading the index…"), elem_id="vb-status")
        chat = gr.Chatbot(show_label=False, elem_id="vb-chat", height="calc(100vh - 390px)", min_height=420,
                          layout="panel", placeholder=PLACEHOLDER, sanitize_html=True, render_markdown=True,
                          latex_delimiters=[], feedback_options=None, buttons=[], allow_tags=False)
        box = gr.Textbox(placeholder="Ask a question about the documents and press Enter", show_label=False,
                         elem_id="vb-question", lines=1, max_lines=6, submit_btn="Ask", autofocus=True)
        with gr.Row():
            new = gr.Button("New conversation", variant="secondary", size="sm", elem_id="vb-new")
            rebuild_button = gr.Button("Rebuild index", variant="secondary", size="sm", elem_id="vb-rebuild")

        turn_io = dict(outputs=[box, chat, questions, shown, status], api_visibility="private")
        box.submit(respond, [box, chat, questions, shown], **turn_io)
        chat.example_select(respond_to_example, [chat, questions, shown], **turn_io)
        new.click(lambda: ("", [], []), None, [box, chat, questions], api_visibility="private")
        chat.clear(lambda: [], None, questions, api_visibility="private")  # the chat's own bin icon
        rebuild_button.click(
            lambda: gr.Button("Rebuilding…", interactive=False), None, rebuild_button, api_visibility="private",
        ).then(rebuild, None, [status, shown], api_visibility="private").then(
            lambda: gr.Button("Rebuild index", interactive=True), None, rebuild_button, api_visibility="private",
        ).then(examples, None, chat, api_visibility="private")
        app.load(current_status, None, [status, shown], api_visibility="private")
        app.load(examples, None, chat, api_visibility="private")
        gr.api(ask, api_name="ask", concurrency_limit=2)  # QA.ask is thread-safe; 2 cores
    return app


def _index_folder(qa: QA) -> str:
    try:
        return str(qa.store().folder)
    except VerbatimError:
        return ""


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
    """Serve `app` on host:port, offline: system fonts, no analytics, no share link, no extra file paths."""
    app.queue().launch(
        server_name=host, server_port=port, theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS),
        css=CSS, share=False, ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
        show_error=False, quiet=not block, prevent_thread_lock=not block, inbrowser=False,
    )


def serve(qa: QA, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Launch the chat page and block until interrupted."""
    launch(create_app(qa), host, port)
