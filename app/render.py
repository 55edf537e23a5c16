"""HTML for the chat page: an `Answer` as quotes with numbered markers and one source card per citation,
the index status line, and the rebuild report.

Every piece of text from a document or a person goes through `_text` (html.escape), so a document holding
`<script>` or `onerror=` shows that markup as text. The HTML never contains a blank line: the chat's
Markdown renderer then passes each reply through as one HTML block instead of reading document text as
Markdown.
"""

from __future__ import annotations

import html
import re
from datetime import datetime

from .records import Answer, Citation

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
    return (f'<blockquote class="{kind} {colour(citation.id)}">“{_text(citation.quote)}”'
            f'{_marker(citation, turn)}</blockquote>')


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
        f'<p class="vb-passage">{passage_html(citation)}</p></div>'
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
    return (f"{lead}{_passage_text(before)}{space_before}<mark class=\"{colour(citation.id)}\">{_text(quote)}</mark>"
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
