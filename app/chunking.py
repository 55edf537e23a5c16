"""Cut a document into passages that follow its structure, and passages into sentences, keeping offsets.

A document is read as blocks: paragraphs (separated by blank lines) and list items (lines opening with
"- ", "1.", "(2)", "iii.", "a)" ...). Short lines that do not end like a sentence, Markdown headings and
bold-only lines are headings; they are not quoted but give each passage its section path, such as
"2. Regional and International Issues > iii. North Korea". Blocks of one section merge into passages of
up to `max_chars`; a longer block is cut between sentences. Every span satisfies text[start:end] == slice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .records import Chunk, Document
from .settings import ChunkingSettings

# --- sentences -------------------------------------------------------------------------------------------

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "gen", "col", "lt", "sgt", "capt", "gov", "sen",
    "rep", "hon", "rev", "amb", "pres", "no", "nos", "vol", "pp", "p", "fig", "figs", "eq", "ref", "refs",
    "approx", "est", "dept", "univ", "inc", "ltd", "co", "corp", "vs", "etc", "al", "cf", "ca", "jan", "feb",
    "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "e.g", "i.e", "a.m", "p.m",
}
_ROMAN = re.compile(r"^(?=[ivxlcdm]+$)m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$", re.I)
# A list marker at the start of a line: bullets, "1." "1)" "(1)" "i." "(iii)" "a." "a)".
LIST_MARKER = re.compile(
    r"[ \t]*(?:[-*•●▪◦–]|\(?\d{1,3}[.)]|\(\d{1,3}\)|\(?[ivxlcdm]{1,6}[.)]|\([ivxlcdm]{1,6}\)|\(?[a-zA-Z][.)]"
    r"|\([a-zA-Z]\))[ \t]+"
)
# Zero-width characters that text copied from web pages keeps on otherwise blank lines: not whitespace to
# Python, but they must not glue two paragraphs (and their sentences) together.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_SPACE = r"\s" + _INVISIBLE  # the inside of a character class: whitespace, or one of those
_BOUNDARY = re.compile(rf"[.!?…]+[\"'”’)\]]*(?=[{_SPACE}])")
_NEXT_START = re.compile(rf"[{_SPACE}]+[\"'“‘(\[*_]*[A-Z0-9]")
_TRIM = " \t\n\r\f\xa0*_#>|" + _INVISIBLE
_BLANK_LINE = re.compile(rf"(?:[^\S\n]|[{_INVISIBLE}])*\n")  # the rest of a line holding nothing to read


# A run-in label before the sentence it names, in Title Case: "Space Cooperation: The United States will ...",
# "METHODS AND FINDINGS: To investigate ...", "Text: Without ...". Its own sentence, so the quote can leave it out.
_LABEL = re.compile(r"[A-Z][\w'’-]*(?:[ \t\xa0]+(?:[A-Z][\w'’.-]*|[a-z]{1,3})){0,7}[ \t\xa0]*:(?:\*\*|__)?"
                    r"(?=[ \t\xa0]+[\"“‘]?[A-Z])")


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at `dot` ends an abbreviation ("Ms.", "U.S.", "p.m.", "No.") or a list marker."""
    start = dot
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "."):
        start -= 1
    word = text[start:dot].lower()
    if not word:
        return False
    if word in ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.)+[a-z]?", word):  # U.S  e.g  a.m
        return True
    if len(word) == 1 and word.isalpha():  # an initial: "John F. Kennedy"
        return True
    line_start = text.rfind("\n", 0, start) + 1
    before = text[line_start:start]
    marker = (word.isdigit() and len(word) <= 3) or bool(_ROMAN.match(word))  # "2." "iii.", not "2020."
    return not before.strip(" \t(") and marker


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans inside text[start:end], trimmed of whitespace, list markers and Markdown emphasis.

    Breaks after . ! ? when the next word starts a sentence, at line starts that open a list item or a blank
    line (one holding only spaces counts), and after a run-in label ("Space Cooperation: The United ...").
    """
    end = len(text) if end is None else end
    cuts: list[int] = []
    for match in _BOUNDARY.finditer(text, start, end):
        stop = match.end()
        if not _NEXT_START.match(text, stop):
            continue
        if text[match.start()] == "." and match.end() - match.start() == 1 and _is_abbreviation(text, match.start()):
            gap = text[stop:stop + 3]
            if "\n\n" not in gap:
                continue
        cuts.append(stop)
    for line in re.finditer(r"\n", text[start:end]):
        at = start + line.end()
        if LIST_MARKER.match(text, at) or _BLANK_LINE.match(text, at):
            cuts.append(at)
    spans: list[tuple[int, int]] = []
    prev = start
    for cut in sorted(set(cuts)) + [end]:
        span = _trim(text, prev, cut)
        while span and (label := _LABEL.match(text, *span)) and label.end() - label.start() <= 60:
            spans.append(_trim(text, span[0], label.end()))  # "Abstract:" then "BACKGROUND:" then the sentence
            span = _trim(text, label.end(), span[1])
        if span:
            spans.append(span)
        prev = cut
    return spans


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    marker = LIST_MARKER.match(text, start, end)
    if marker:
        start = marker.end()
    while start < end and text[start] in _TRIM:
        start += 1
    while end > start and text[end - 1] in _TRIM:
        end -= 1
    return (start, end) if end - start >= 2 and any(ch.isalnum() for ch in text[start:end]) else None


# --- blocks and headings ---------------------------------------------------------------------------------

# Text whose line breaks were lost runs an enumerated sub-point on after the previous sentence
# ("...anywhere in the world.ii. The East China Sea..."): such a marker starts a line of its own.
# The sentence before must end in a word, not a number ("R version 0.4.5. Univariate" is no sub-point).
_LOST_BREAK = re.compile(
    r"(?:(?<=[^\W\d_][.!?:;])|(?<=[^\W\d_][.!?:;][”\"’)])|(?<=[^\W\d_][”\"’)])|(?<=[”\"’)][.!?:;]))"
    r"[ \t]?(?=(?:\(?(?:[ivx]{1,5}|\d{1,2}|[a-h])[.)]|\(\d{1,2}\))[ \t]+[A-Z“\"‘(])")
_ENUMERATOR = re.compile(r"[ \t]*(\(?(?:\d{1,3}|[ivxlcdm]{1,6}|[a-zA-Z])[.)]|\((?:\d{1,3}|[ivxlcdm]{1,6}|[a-zA-Z])\))"
                         r"[ \t]+")
_TERMINAL = (".", "!", "?", ";", ",")
_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_MD_HEADING = re.compile(r"#{1,6}(?=\s)")
MAX_HEADING_WORDS = 10
WRAP_WIDTHS = (60, 100)  # the widths text is hard-wrapped at (pandoc and e-mail 72, PDF lines 80-100)


@dataclass(frozen=True)
class Block:
    """A paragraph, list item or heading. `kind` is "body" (quotable), "heading" (a section's name, never
    quoted) or "furniture" (a photo credit or similar whole-line aside: neither quoted nor a section)."""

    start: int
    end: int
    kind: str
    outline: tuple[str, int] | None = None  # (family, level or number) for headings and enumerated items
    label: str | None = None  # what the block adds to the section path


def line_starts(text: str, start: int, end: int) -> list[int]:
    """Where lines start inside text[start:end]: after each newline and at each lost line break."""
    starts = {start}
    starts.update(start + m.end() for m in re.finditer(r"\n", text[start:end]) if start + m.end() < end)
    starts.update(m.end() for m in _LOST_BREAK.finditer(text, start, end))
    return sorted(starts)


def _standalone(line: str, next_line: str | None) -> bool:
    """A short line that does not run on into the next one: a title, a heading or a caption."""
    stripped = line.strip()
    return (0 < len(stripped) <= 70 and len(stripped.split()) <= MAX_HEADING_WORDS
            and not stripped.endswith(_TERMINAL) and not (next_line or "").lstrip()[:1].islower())


def _family(marker: str) -> tuple[str, int]:
    """A marker's family ("n.", "(n)", "i.", "a.") and its number, so "(2)" follows "(1)" and "ii." "i."."""
    core = marker.strip("() .\t")
    shape = ("(" if marker.lstrip().startswith("(") else "") + (")" if marker.rstrip().endswith(")") else ".")
    if core.isdigit():
        return "n" + shape, int(core)
    if core.islower() and _ROMAN.match(core) and (len(core) > 1 or core in "ivx"):
        return "i" + shape, _roman_value(core)
    return "a" + shape, ord(core.lower()) - 96


def _roman_value(numeral: str) -> int:
    values = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100, "d": 500, "m": 1000}
    total = 0
    for ch, nxt in zip(numeral, numeral[1:] + " "):
        total += -values[ch] if values.get(nxt, 0) > values[ch] else values[ch]
    return total


def classify(text: str, start: int, end: int, multi_line: bool) -> Block:
    """What a block is, from its own text: headings are short and do not end like a sentence."""
    body = text[start:end]
    if multi_line:
        return Block(start, end, "body")
    stripped = body.strip()
    md = _MD_HEADING.match(stripped)
    if md:
        return Block(start, end, "heading", ("#", len(md.group())), heading_label(body))
    bold = re.fullmatch(r"\*\*(.+?)\*\*:?", stripped, re.S) or re.fullmatch(r"__(.+?)__", stripped)
    if bold:
        return Block(start, end, "heading", ("#", 2), heading_label(body))
    marker = _ENUMERATOR.match(body)
    if marker and not body.lstrip().startswith(("-", "*")):
        family = _family(marker.group(1))
        rest = body[marker.end():].strip()
        if rest and len(rest.split()) <= MAX_HEADING_WORDS and not rest.endswith(_TERMINAL):
            return Block(start, end, "heading", family, heading_label(body))
        return Block(start, end, "body", family, marker.group(1).strip())
    if re.fullmatch(r"\([^()]*(\([^()]*\)[^()]*)*\)", stripped):
        return Block(start, end, "furniture")
    letters = [ch for ch in stripped if ch.isalpha()]
    if len(letters) >= 4 and all(ch.isupper() for ch in letters) and len(stripped.split()) <= 12:
        return Block(start, end, "heading", ("#", 2), heading_label(body))
    if _standalone(body, None) and len(letters) >= 2 and not LIST_MARKER.match(body) and not stripped.endswith(":"):
        return Block(start, end, "heading", ("#", 2), heading_label(body))
    return Block(start, end, "body")


def wrap_width(text: str) -> int | None:
    """The width hard-wrapped text was wrapped at (most of its lines end within a few characters of it), or
    None for text that puts a paragraph on a line."""
    lengths = sorted(len(line.rstrip()) for line in text.split("\n") if line.strip())
    if len(lengths) < 8:
        return None
    width = lengths[int(0.95 * (len(lengths) - 1))]
    near = sum(width - 15 <= n <= width for n in lengths)
    return width if WRAP_WIDTHS[0] <= width <= WRAP_WIDTHS[1] and near >= 0.4 * len(lengths) else None


def _wrapped(line: str, next_line: str, width: int | None) -> bool:
    """Whether `line` ends only because the next line's first word would not fit in the wrap width: it runs
    on, even when it ends in "Dr." or looks like a short title ("Launch a Science and Technology Cooperation"
    over "Program (STIC) to support ...")."""
    words = next_line.split()
    return width is not None and bool(words) and len(line.rstrip()) + 1 + len(words[0]) > width


def blocks(text: str) -> list[Block]:
    """Paragraphs, list items and headings, in order.

    Within a paragraph a new block starts at a list marker, a Markdown heading, a lost line break, after a
    line that ends a sentence (text that is not hard-wrapped puts one paragraph per line) and after a short
    line that does not run on into the next (a title or heading above its text); in hard-wrapped text, a
    line that the wrap width ended runs on into the next unless that one opens a list item or is a heading.
    """
    front = _FRONT_MATTER.match(text)
    pos = front.end() if front else 0
    width = wrap_width(text[pos:])
    out: list[Block] = []
    for para in re.finditer(rf"(?:[^\n]*[^{_SPACE}][^\n]*(?:\n|$))+", text[pos:]):
        p_start, p_end = pos + para.start(), pos + para.end()
        starts = line_starts(text, p_start, p_end)
        lines = [text[s:e].rstrip("\n") for s, e in zip(starts, starts[1:] + [p_end])]
        item_starts = [p_start]
        for k in range(1, len(starts)):
            current, prev = lines[k], lines[k - 1]
            prev_end = prev.rstrip(" \t\xa0*")
            ends = prev_end.endswith((".", "!", "?", ":", ";", "\"", "”")) or _standalone(prev, current)
            if ends and _wrapped(prev, current, width):  # the wrap ended it: it runs on, unless a heading follows
                after = (lines[k + 1:] or [""])[0]
                ends = _standalone(current, after) and not _wrapped(current, after, width)
            if (text[starts[k] - 1] != "\n" or LIST_MARKER.match(current) or _MD_HEADING.match(current.strip())
                    or ends):
                item_starts.append(starts[k])
        for i, s in enumerate(item_starts):
            e = item_starts[i + 1] if i + 1 < len(item_starts) else p_end
            span = _trim_block(text, s, e)
            if span is not None:
                body = text[span[0]:span[1]]
                out.append(classify(text, span[0], span[1], "\n" in body and not body.startswith(("**", "__"))))
    return out


def _trim_block(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and (text[start].isspace() or text[start] in _INVISIBLE):
        start += 1
    while end > start and (text[end - 1].isspace() or text[end - 1] in _INVISIBLE):
        end -= 1
    return (start, end) if end > start and any(ch.isalnum() for ch in text[start:end]) else None


def heading_label(text: str) -> str:
    """A heading as shown in a section path: Markdown and emphasis marks removed, whitespace folded."""
    label = re.sub(r"</?[a-zA-Z]+>", "", re.sub(r"^#{1,6}\s*", "", text.strip()))
    label = label.strip("*_ \n").rstrip(":")
    return " ".join(label.split())


class Outline:
    """The section path as a document is read: headings, and enumerated paragraphs such as "(2) ...".

    Markdown-style headings nest by level. Enumerated ones nest by family: a family already open continues
    ("iii." replaces "ii."), a new family opened by its first number ("i.", "(1)") nests inside, and one
    that starts further on ("(2)" after a list of "i." items) continues an outer numbering, closing the items
    above it. Items of a list introduced by a colon ("agreed on two points: (1) ... (2) ...") are list
    entries, not sections.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, int, str, bool]] = []  # (family, level or number, label, is item)
        self.list_family: str | None = None

    def section(self) -> str | None:
        return " > ".join(label for *_, label, _ in self.entries) or None

    def add(self, block: Block, after_colon: bool) -> None:
        family, value = block.outline
        if block.kind == "body":
            if after_colon and value == 1:
                self.list_family = family
            if family == self.list_family:
                return
        else:
            self.list_family = None
        if family == "#":
            while self.entries and (self.entries[-1][0] != "#" or self.entries[-1][1] >= value):
                self.entries.pop()
        elif any(e[0] == family for e in self.entries):
            while self.entries[-1][0] != family:
                self.entries.pop()
            self.entries.pop()
        elif value > 1:
            while self.entries and self.entries[-1][3]:
                self.entries.pop()
        self.entries.append((family, value, block.label or "", block.kind == "body"))


# --- passages --------------------------------------------------------------------------------------------


def chunk_document(doc: Document, settings: ChunkingSettings) -> list[Chunk]:
    """Passages of body text. Headings become section paths; a document's opening title lines (before any
    body text) and furniture are neither quoted nor part of a path, and no passage spans them."""
    if settings.fixed_chars:
        return _fixed_chunks(doc, settings.fixed_chars)
    text = doc.text
    outline = Outline()
    chunks: list[Chunk] = []
    group: list[Block] = []
    group_section: list[str | None] = [None]

    def flush() -> None:
        if group:
            chunks.extend(_pack(doc, group, group_section[0], settings))
            group.clear()

    page = None
    previous: Block | None = None
    seen_body = False
    for block in blocks(text):
        if doc.pages and doc.page_at(block.start) != page:
            flush()  # a passage never spans two pages, so its citation's page is right
            page = doc.page_at(block.start)
        after_colon = previous is not None and text[previous.start:previous.end].rstrip().endswith(":")
        previous = block
        if block.kind != "body":
            flush()
            title_line = not seen_body and block.outline == ("#", 2) and not _MD_HEADING.match(
                text[block.start:block.end].lstrip())
            if block.kind == "furniture" or title_line:
                continue
        if block.outline is not None:
            outline.add(block, after_colon)
        if block.kind == "body":
            seen_body = True
            if group and outline.section() != group_section[0]:
                flush()
            if not group:
                group_section[0] = outline.section()
            group.append(block)
    flush()
    return chunks


def _pack(doc: Document, group: list[Block], section: str | None, settings: ChunkingSettings) -> list[Chunk]:
    """Merge consecutive blocks up to max_chars; cut an over-long block between sentences."""
    pieces: list[tuple[int, int]] = []
    for block in group:
        if block.end - block.start <= settings.max_chars:
            pieces.append((block.start, block.end))
        else:
            pieces.extend(_cut_long(doc.text, block.start, block.end, settings.max_chars))
    chunks: list[Chunk] = []
    current: tuple[int, int] | None = None
    for start, end in pieces:
        if current and end - current[0] <= settings.max_chars:
            current = (current[0], end)
        else:
            if current:
                chunks.append(_make_chunk(doc, *current, section))
            current = (start, end)
    if current:
        chunks.append(_make_chunk(doc, *current, section))
    return _merge_tiny(doc, chunks, settings)


def _merge_tiny(doc: Document, chunks: list[Chunk], settings: ChunkingSettings) -> list[Chunk]:
    """A passage shorter than min_chars joins its predecessor in the section when both still fit."""
    out: list[Chunk] = []
    for chunk in chunks:
        prev = out[-1] if out else None
        if prev and (chunk.end - chunk.start < settings.min_chars) and chunk.end - prev.start <= settings.max_chars * 1.3:
            out[-1] = _make_chunk(doc, prev.start, chunk.end, prev.section)
        else:
            out.append(chunk)
    return out


def _cut_long(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    pieces: list[tuple[int, int]] = []
    piece_start = None
    piece_end = None
    for s, e in split_sentences(text, start, end):
        if piece_start is None:
            piece_start, piece_end = s, e
        elif e - piece_start <= max_chars:
            piece_end = e
        else:
            pieces.append((piece_start, piece_end))
            piece_start, piece_end = s, e
    if piece_start is not None:
        pieces.append((piece_start, piece_end))
    return pieces


def _fixed_chunks(doc: Document, size: int) -> list[Chunk]:
    """Plain fixed windows, as the common tutorial pipeline cuts text (the eval's baseline)."""
    chunks = []
    for start in range(0, len(doc.text), size):
        span = _trim_block(doc.text, start, min(len(doc.text), start + size))
        if span:
            chunks.append(_make_chunk(doc, *span, None))
    return chunks


def _make_chunk(doc: Document, start: int, end: int, section: str | None) -> Chunk:
    sentences = tuple(split_sentences(doc.text, start, end)) or ((start, end),)
    return Chunk(doc.path, start, end, doc.text[start:end], section, doc.page_at(start), sentences)
