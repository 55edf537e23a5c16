"""The web server: the chat page (Gradio, mounted at /), the REST API beside it (`POST /api/ask`, documented
at /docs and /openapi.json, served without any CDN), and the page showing a whole document (`/document`).

One FastAPI application under one uvicorn server, so the REST endpoint answers from a thread pool as fast as
`QA.ask` itself, without Gradio's queue in between. Errors from the core become a JSON error with a message
a person can act on; nothing else leaves as a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Callable

import uvicorn
from fastapi import Query
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from .errors import VerbatimError
from .library import indexed_document, span
from .qa import QA
from .render import document_page, unavailable_page
from .settings import APP_VERSION

log = logging.getLogger(__name__)
INTERNAL_ERROR = "Something went wrong inside Verbatim; the details are in the server log. Please try again."


class AskRequest(BaseModel):
    question: str = Field(description="The question, in plain words.", examples=["Who chaired the meeting?"])
    history: list[str] = Field(default_factory=list, max_length=100, examples=[[]],
                               description="The conversation's earlier questions, oldest first; a follow-up "
                                           "such as “Where is it based?” is read with them.")


class Span(BaseModel):
    start: int
    end: int


class CitationJSON(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int = Field(description="The number the answer text marks it with: [1], [2], ...")
    quote: str = Field(description="Verbatim text of the document: text[start:end] == quote")
    doc: str = Field(description="Path of the document, relative to the corpus folder")
    title: str
    section: str | None = Field(description="Heading path inside the document, “ > ”-joined")
    start: int = Field(description="Character offset of the quote in the document text")
    end: int
    score: float
    page: int | None = Field(None, description="PDF page, for PDFs")
    answer: Span | None = Field(None, description="The exact answer inside the quote, document offsets")


class AnswerJSON(BaseModel):
    """Verbatim's answer JSON, as `python -m app ask --json` prints it."""

    model_config = ConfigDict(extra="allow")
    question: str
    abstained: bool = Field(description="True when the documents do not answer it; the citations are then "
                                        "related passages, not an answer")
    answer: str = Field(description="The text shown to a person: quotes marked [1] [2], or the abstention")
    citations: list[CitationJSON]
    notice: str | None = Field(None, description="e.g. that an over-long question was cut")


class ErrorJSON(BaseModel):
    detail: str


def create_server(qa: QA, allow_upload: bool = True):
    """The FastAPI application: REST API, document page, and the chat page at /."""
    import gradio as gr

    from .ui import CSS, HEAD, THEME, create_app

    api = FastAPIOffline(title="Verbatim", version=APP_VERSION, static_url="/api/static",
                         description="Answers questions about your documents with exact quotes and citations.")

    @api.post("/api/ask", response_model=AnswerJSON, response_model_exclude_unset=True, tags=["answers"],
              responses={503: {"model": ErrorJSON, "description": "No usable index (the message says how to fix it)"}})
    def ask(request: AskRequest):
        """Answer a question with exact quotes from the documents; send the earlier questions of the
        conversation as `history` to ask follow-ups."""
        try:
            return qa.ask(request.question, request.history).to_json()
        except VerbatimError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except Exception:
            log.exception("answering %r failed", request.question)
            return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)

    @api.get("/document", response_class=HTMLResponse, include_in_schema=False)
    def document(doc: str, start: int | None = Query(None), end: int | None = Query(None),
                 answer_start: int | None = Query(None), answer_end: int | None = Query(None)):
        try:
            found = indexed_document(qa, doc)
        except VerbatimError as exc:
            return HTMLResponse(unavailable_page(str(exc)), status_code=404)
        return HTMLResponse(document_page(found, span(found, start, end), span(found, answer_start, answer_end)))

    blocks = create_app(qa, allow_upload=allow_upload)
    blocks.queue(default_concurrency_limit=2)  # 2 cores: the page's answers and rebuilds queue beyond that
    return gr.mount_gradio_app(
        api, blocks, path="/", theme=THEME, css=CSS, head=HEAD, footer_links=["api"], run_history=False,
        show_error=False, ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False,
        max_file_size=int(qa.settings.max_file_mb * 1e6),
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_thread_per_answer() -> None:
    """One question's forward passes are too small to split across cores (one thread is faster even for a
    lone client: 64 against 70 ms per answer here); concurrent questions use the cores instead."""
    import torch

    torch.set_num_threads(1)


class _Uvicorn(uvicorn.Server):
    """uvicorn, calling `ready` once its socket listens (so "Serving at ..." is never printed too early)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and self.ready is not None:
            self.ready()


class Server:
    """The app on host:port under uvicorn, in this thread (`run`) or a background one (`start`/`stop`).
    Uploads are on when serving this machine only, or when `allow_upload` says so."""

    def __init__(self, qa: QA, host: str = "127.0.0.1", port: int = 7860, allow_upload: bool = False,
                 ready: Callable[[], None] | None = None) -> None:
        self.qa = qa
        _one_thread_per_answer()
        self.upload = allow_upload or is_loopback(host)
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        config = uvicorn.Config(create_server(qa, self.upload), host=host, port=port, log_level="warning",
                                timeout_graceful_shutdown=5)
        self._server = _Uvicorn(config, ready)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        self._server.run()

    def start(self, wait_seconds: float = 60) -> "Server":
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait_seconds
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
