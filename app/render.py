"""HTML for the chat page: an `Answer` as quotes with numbered markers, the exact answer in bold, a copy
button and one source card per citation (linking to the whole document at that place); the index status
line, the documents panel, the rebuild and upload reports; and the page showing a whole document.

Every piece of text from a document or a person goes through `_text` (html.escape), so a document holding
`<script>` or `onerror=` shows that markup as text. The HTML never contains a blank line: the chat's
Markdown renderer then passes each reply through as one HTML block instead of reading document text as
Markdown.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from urllib.parse import urlencode

from .records import Answer, Citation, Document

COLOURS = 6  # distinct marker colours (CSS classes vb-c1 … vb-c6), reused cyclically
CONTEXT_CHARS = 320  # passage text shown on each side of the highlighted quote
_LIST_ITEM = re.compile(r"\n(?=\s*(?:[-*+•]|\d+[.)])\s)")
_PARAGRAPH = re.compile(r"\n\s*\n")


def _text(text: str) -> str:
    """Escaped, whitespace folded: one line of safe text."""
    return html.escape(" ".join(text.split()))


def _passage_text(text: str) -> str:
    """Escaped passage text keeping its paragraph and list-item breaks, other line wraps folded."""
    paragraphs = _PARAGRAPH.split(text)
    return "<br><br>".join("<br>".join(_text(line) for line in _LIST_ITEM.split(p)) for p in paragraphs)


def colour(number: int) -> str:
    return f"vb-c{(number - 1) % COLOURS + 1}"


def anchor(turn: int, number: int) -> str:
    """The id linking marker [n] of reply `turn` to its card."""
    return f"vb-t{turn}-{number}"


def question_html(question: str) -> str:
    return f'<div class="vb-question">{_text(question)}</div>'


def message_html(message: str, kind: str = "info") -> str:
    """A plain message in the chat (a gentle hint or an error), never a traceback."""
    return f'<div class="vb-message vb-{kind}">{_text(message)}</div>'


def answer_html(answer: Answer, turn: int) -> str:
    """One reply: the notice, the quotes (or the abstention), then the source cards."""
    parts = ['<div class="vb-reply">']
    if answer.notice:
        parts.append(f'<div class="vb-notice">{_text(answer.notice)}</div>')
    if answer.abstained:
        parts.append(f'<p class="vb-abstain">{_text(answer.answer.splitlines()[0] if answer.answer else "")}</p>')
        if answer.citations:
            parts.append('<div class="vb-related-label">Related, not an answer</div>')
    else:
        for i, citation in enumerate(answer.citations):
            if i == 1:
                parts.append('<div class="vb-also">Also in the documents</div>')
            parts.append(_quote_html(citation, turn, primary=i == 0))
    if answer.citations:
        parts.append('<div class="vb-sources">')
        parts += [card_html(c, turn, related=answer.abstained) for c in answer.citations]
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def _quote_html(citation: Citation, turn: int, primary: bool) -> str:
    kind = "vb-quote vb-primary" if primary else "vb-quote"
    quote = _with_answer(citation.quote, citation.start, citation.answer)
    return (f'<blockquote class="{kind} {colour(citation.id)}">“{quote}”'
            f'{_marker(citation, turn)}{_copy_button(citation)}</blockquote>')


def _with_answer(text: str, offset: int, answer: tuple[int, int] | None) -> str:
    """`text` (which starts at document offset `offset`) as one line of safe HTML, the answer span in bold."""
    if answer is None or not offset <= answer[0] < answer[1] <= offset + len(text):
        return _text(text)
    cut = answer[0] - offset, answer[1] - offset
    parts = [html.escape(" ".join(f"_{part}_".split())[1:-1])
             for part in (text[:cut[0]], text[cut[0]:cut[1]], text[cut[1]:])]  # folded, outer spaces kept
    parts[0], parts[2] = parts[0].lstrip(), parts[2].rstrip()
    return f'{parts[0]}<strong class="vb-answer">{parts[1]}</strong>{parts[2]}'


def citation_text(citation: Citation) -> str:
    """What the copy button copies: the quote and where it comes from, as plain text."""
    where = [citation.title, *[p.strip() for p in (citation.section or "").split(" > ")
                               if p.strip() and p.strip() != citation.title]]
    if citation.page is not None:
        where.append(f"page {citation.page}")
    return (f"“{' '.join(citation.quote.split())}” — {', '.join(where)} "
            f"({citation.doc}, characters {citation.start}–{citation.end})")


def _copy_button(citation: Citation) -> str:
    """The button and, hidden beside it, the text it copies (the chat's sanitizer drops data attributes)."""
    return (f' <button type="button" class="vb-copy">Copy<span class="vb-sr"> quote {citation.id} with its source'
            f'</span></button><span class="vb-copy-text">{_text(citation_text(citation))}</span>')


def document_url(doc: str, start: int | None = None, end: int | None = None,
                 answer: tuple[int, int] | None = None) -> str:
    """The whole-document page, at the cited place when offsets are given (relative to the chat page)."""
    query = {"doc": doc}
    if start is not None and end is not None:
        query |= {"start": start, "end": end}
        if answer is not None:
            query |= {"answer_start": answer[0], "answer_end": answer[1]}
    return f"document?{urlencode(query)}" + ("#vb-quote" if start is not None else "")


def _marker(citation: Citation, turn: int) -> str:
    return (f' <a class="vb-marker {colour(citation.id)}" href="#{anchor(turn, citation.id)}" '
            f'title="Source {citation.id}: {_text(citation.title)}">[{citation.id}]</a>')


def card_html(citation: Citation, turn: int, related: bool = False) -> str:
    """Title, where in the document, and the quote highlighted inside its passage."""
    where = [part for part in (citation.section or "").split(" > ") if part.strip()]
    meta = [" › ".join(_text(p) for p in where)] if where else []
    if citation.page is not None:
        meta.append(f"page {citation.page}")
    meta.append(f'<span class="vb-doc">{_text(citation.doc)}</span>')
    label = '<span class="vb-related">Related, not an answer</span>' if related else ""
    return (
        f'<div class="vb-card {colour(citation.id)}{" vb-card-related" if related else ""}" '
        f'id="{anchor(turn, citation.id)}">'
        f'<div class="vb-card-head"><span class="vb-num">{citation.id}</span>'
        f'<span class="vb-title">{_text(citation.title)}</span>{label}</div>'
        f'<div class="vb-where">{" · ".join(meta)}</div>'
        f'<p class="vb-passage">{passage_html(citation)}</p>'
        f'<a class="vb-open" href="{html.escape(document_url(citation.doc, citation.start, citation.end, citation.answer))}"'
        f' target="_blank" rel="noopener">Open the document at this place</a></div>'
    )


def passage_html(citation: Citation) -> str:
    """The surrounding passage with the quote in <mark>, trimmed to a window around it at word boundaries."""
    start = max(citation.start - citation.context_start, 0)
    end = max(min(citation.end - citation.context_start, len(citation.context)), start)
    before, quote, after = citation.context[:start], citation.context[start:end], citation.context[end:]
    lead = trail = ""
    if len(before) > CONTEXT_CHARS:
        cut = before.find(" ", len(before) - CONTEXT_CHARS)
        before, lead = before[cut + 1 if cut >= 0 else len(before) - CONTEXT_CHARS:], "… "
    if len(after) > CONTEXT_CHARS:
        cut = after.rfind(" ", 0, CONTEXT_CHARS)
        after, trail = after[:cut if cut > 0 else CONTEXT_CHARS], " …"
    space_before = " " if before[-1:].isspace() else ""
    space_after = " " if after[:1].isspace() else ""
    marked = _with_answer(quote, citation.context_start + start, citation.answer)
    return (f"{lead}{_passage_text(before)}{space_before}<mark class=\"{colour(citation.id)}\">{marked}</mark>"
            f"{space_after}{_passage_text(after)}{trail}")


def status_html(status: dict | None, problem: str | None = None, report: str | None = None,
                failed: bool = False) -> str:
    """The line saying what is indexed, a warning when the corpus changed since, and the last rebuild's report."""
    parts = ['<div class="vb-status">']
    if status is None:
        parts.append(f'<div class="vb-warn">{_text(problem or "No index yet.")} Press “Rebuild index”.</div>')
    else:
        documents, model = status["documents"], status["model"]["id"].rsplit("/", 1)[-1]
        parts.append(
            f'<div class="vb-indexed"><b>{documents:,} document{"s" * (documents != 1)}</b> · '
            f'{status["chunks"]:,} passages · model {_text(model)} · built {_text(_when(status["built_at"]))}</div>')
        if status["stale"]:
            parts.append(f'<div class="vb-warn">⚠ The documents changed since this index was built: '
                         f'{_text(_changes(status["changes"]))}. Answers come from the index as built; '
                         f'press “Rebuild index” to include the changes.</div>')
        if status["skipped"]:
            skipped = "; ".join(f"{s['path']} ({s['reason']})" for s in status["skipped"][:3])
            parts.append(f'<div class="vb-skipped">{len(status["skipped"])} file(s) not indexed: '
                         f'{_text(skipped)}</div>')
    if report:
        parts.append(f'<div class="{"vb-warn" if failed else "vb-report"}">{_text(report)}</div>')
    parts.append("</div>")
    return "".join(parts)


def _changes(changes: dict[str, list[str]]) -> str:
    """ "1 added (a.md), 2 changed (b.md, c.md)", naming at most three files of each kind."""
    return ", ".join(f"{len(files)} {kind} ({', '.join(files[:3])}{', …' * (len(files) > 3)})"
                     for kind, files in changes.items() if files)


def _when(built_at: str) -> str:
    """"2025-01-02T03:04:05+0000" as "2025-01-02 03:04 UTC"; anything else as it is."""
    try:
        moment = datetime.strptime(built_at, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return built_at
    return moment.strftime("%Y-%m-%d %H:%M ") + (moment.tzname() or "")


def build_summary(report) -> str:
    """One line for a finished rebuild (a `BuildReport`)."""
    line = (f"Rebuilt in {report.seconds:.1f} s: {report.added} added, {report.changed} changed, "
            f"{report.removed} removed, {report.unchanged} unchanged, {report.skipped} skipped; "
            f"{report.chunks:,} passages ({report.embedded_chunks:,} embedded).")
    return line if report.rebuilt else f"Nothing changed; the index is up to date ({report.chunks:,} passages)."


def library_html(status: dict | None, problem: str | None = None) -> str:
    """The documents panel: every indexed document (opens whole), when the index was built, what was skipped."""
    if status is None:
        return f'<div class="vb-library"><p class="vb-warn">{_text(problem or "No index yet.")}</p></div>'
    parts = ['<div class="vb-library">',
             f'<p class="vb-lib-built">Index built {_text(_when(status["built_at"]))} with '
             f'{_text(status["model"]["id"].rsplit("/", 1)[-1])}: {status["chunks"]:,} passages.</p>',
             f'<h3 class="vb-lib-head">Indexed ({len(status["files"])})</h3><ul class="vb-lib-docs">']
    for f in status["files"]:
        facts = [f'{f["passages"]:,} passage{"s" * (f["passages"] != 1)}']
        if f["pages"]:
            facts.append(f'{f["pages"]} pages')
        if f["bytes"] is not None:
            facts.append(_size(f["bytes"]))
        if f["modified"]:
            facts.append(f'file modified {_text(_when(f["modified"]))}')
        parts.append(f'<li><a class="vb-lib-title" href="{html.escape(document_url(f["path"]))}" target="_blank" '
                     f'rel="noopener">{_text(f["title"])}</a><span class="vb-doc">{_text(f["path"])}</span>'
                     f'<span class="vb-lib-facts">{" · ".join(facts)}</span></li>')
    parts.append("</ul>")
    if status["skipped"]:
        parts.append(f'<h3 class="vb-lib-head">Not indexed ({len(status["skipped"])})</h3><ul class="vb-lib-skipped">')
        parts += [f'<li><span class="vb-doc">{_text(s["path"])}</span> {_text(s["reason"])}</li>'
                  for s in status["skipped"]]
        parts.append("</ul>")
    if status["stale"]:
        parts.append(f'<p class="vb-warn">Changed since the build: {_text(_changes(status["changes"]))}.</p>')
    parts.append("</div>")
    return "".join(parts)


def _size(size: int) -> str:
    if size < 10_000:
        return f"{size:,} bytes"
    return f"{size / 1e3:,.0f} kB" if size < 10_000_000 else f"{size / 1e6:,.0f} MB"


def upload_summary(added, report) -> tuple[str, bool]:
    """One line for a finished upload (`uploads.Added` list, the `BuildReport` after it, or None when no build
    ran); True when something went wrong."""
    done, failed = [], False
    for a in added:
        if a.reason:
            done.append(f"{a.name}: not added, {a.reason}")
            failed = True
        elif a.duplicate_of:
            done.append(f"{a.name}: already in the corpus as {a.duplicate_of}")
        else:
            skipped = next((s.reason for s in (report.skipped_files if report else ()) if s.path == a.path), None)
            done.append(f"{a.name}: added as {a.path}, but not indexed: {skipped}" if skipped else
                        f"{a.name}: added as {a.path} and indexed; ask about it now")
            failed = failed or bool(skipped)
    return "; ".join(done) + ".", failed


def document_page(document: Document, quote: tuple[int, int] | None, answer: tuple[int, int] | None) -> str:
    """A whole document as its own page (no script), the cited quote marked and its answer in bold; the link
    that opens it ends in #vb-quote, so the browser scrolls to the place."""
    text = document.text
    if quote is None:
        body = html.escape(text)
    else:
        inner = _marked_span(text, quote, answer if answer and quote[0] <= answer[0] <= answer[1] <= quote[1] else None)
        body = (f'{html.escape(text[:quote[0]])}<mark id="vb-quote">{inner}</mark>'
                f'{html.escape(text[quote[1]:])}')
    where = f" The quote is marked (characters {quote[0]}–{quote[1]})." if quote else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_text(document.title)} · Verbatim</title><style>{DOCUMENT_CSS}</style></head><body>'
            f'<header><a href="./">← Back to the chat</a><h1>{_text(document.title)}</h1>'
            f'<p class="where"><span class="doc">{_text(document.path)}</span>, the whole text as indexed.{where}</p>'
            f'</header><main><div class="text">{body}</div></main></body></html>')


def _marked_span(text: str, quote: tuple[int, int], answer: tuple[int, int] | None) -> str:
    if answer is None or answer[0] == answer[1]:
        return html.escape(text[quote[0]:quote[1]])
    return (f"{html.escape(text[quote[0]:answer[0]])}<strong>{html.escape(text[answer[0]:answer[1]])}</strong>"
            f"{html.escape(text[answer[1]:quote[1]])}")


def unavailable_page(message: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>Verbatim</title>'
            f'<style>{DOCUMENT_CSS}</style></head><body><header><a href="./">← Back to the chat</a>'
            f'<h1>Document not available</h1><p class="where">{_text(message)}</p></header></body></html>')


DOCUMENT_CSS = """
body {margin: 0; font: 1rem/1.6 ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1f2937; background: #fff}
header, main {max-width: 46rem; margin: 0 auto; padding: 1rem 1.25rem}
header {border-bottom: 1px solid #d1d5db}
h1 {font-size: 1.4rem; margin: .5rem 0 .25rem}
a {color: #1d4ed8}
.where {margin: 0; color: #4b5563; font-size: .9rem}
.doc {font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem}
.text {white-space: pre-wrap; overflow-wrap: anywhere}
mark {background: #fde68a; color: #111827; padding: .05em 0; scroll-margin-top: 25vh;
  box-shadow: 0 0 0 2px #fde68a}
mark strong {font-weight: 700}
@media (prefers-color-scheme: dark) {
  body {color: #e5e7eb; background: #111827} header {border-color: #374151} a {color: #93c5fd}
  .where {color: #d1d5db} mark {background: #854d0e; color: #fff; box-shadow: 0 0 0 2px #854d0e}
}
"""
