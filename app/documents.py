"""Load a corpus folder into `Document`s: .txt, .md, .html/.htm and .pdf, recursively.

A file that cannot be read is reported as `Skipped` with a one-line reason and never stops the others.
Hidden files and folders (".git", ".about") are not part of the corpus; symlinks are not followed, so a
link can never pull a file from outside the corpus into the index.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from html.parser import HTMLParser
from pathlib import Path

from .records import Document, Skipped

TEXT_SUFFIXES = {".txt", ".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES


class Unreadable(Exception):
    """A file that cannot become text; the message is the reason shown in the build report."""


def corpus_files(root: Path) -> tuple[list[Path], list[Skipped]]:
    """Every candidate file under `root` (sorted), and the entries refused before reading (symlinks)."""
    files: list[Path] = []
    refused: list[Skipped] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            shown = relpath(path, root)
            try:
                shown.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(shown).decode("utf-8", "replace")
                refused.append(Skipped(shown, "file name is not valid UTF-8; rename it"))
                continue
            if path.suffix.lower() not in SUFFIXES:
                refused.append(Skipped(shown, f"unsupported format ({path.suffix.lower() or 'no extension'}); "
                                              "use .txt, .md, .html or .pdf"))
                continue
            if path.is_symlink():
                refused.append(Skipped(relpath(path, root), "symbolic link, not followed"))
                continue
            files.append(path)
        for d in list(dirnames):
            if (Path(dirpath) / d).is_symlink():
                refused.append(Skipped(relpath(Path(dirpath) / d, root), "symbolic link, not followed"))
    return files, refused


def relpath(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_document(path: Path, root: Path, max_bytes: int) -> Document:
    """Read one file; raises `Unreadable` with the reason when it cannot be indexed."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise Unreadable(
                f"too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.0f} MB; raise VERBATIM_MAX_FILE_MB to include it)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise Unreadable("vanished during the build") from None
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc})") from None
    sha = hashlib.sha256(data).hexdigest()
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        text, pages, title = _pdf_text(data)
    else:
        raw = _decode(data)
        if suffix in HTML_SUFFIXES:
            text, title = _html_text(raw)
        else:
            text, title = raw, _text_title(raw)
        pages = ()
    if not text.strip():
        raise Unreadable("empty (no text)")
    return Document(relpath(path, root), title or path.stem, text, sha, pages)


def load_corpus(root: Path, max_bytes: int) -> tuple[list[Document], list[Skipped]]:
    """All readable documents under `root` and a reason for every file left out."""
    paths, skipped = corpus_files(root)
    docs: list[Document] = []
    for path in paths:
        try:
            docs.append(load_document(path, root, max_bytes))
        except Unreadable as exc:
            skipped.append(Skipped(relpath(path, root), str(exc)))
    return docs, skipped


def _decode(data: bytes) -> str:
    """UTF-8 first (as `open(path, encoding="utf-8").read()` sees it, newlines included); Windows-1252
    or Latin-1 for the legacy text people still have; binary data is refused."""
    if b"\x00" in data[:8192]:
        raise Unreadable("binary data, not text")
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as open() reads
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\t\f")
    if controls > max(8, len(text[:8192]) // 50):
        raise Unreadable("binary data, not text")
    return text


_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
_TITLE_FIELD = re.compile(r"^title:\s*(.+?)\s*$", re.M)
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _text_title(text: str) -> str:
    """The front-matter title, else the first Markdown heading, else the last of the short lines that open
    the text (a saved web page puts its site or section label above the page's own title, which sits
    nearest the text; captions in parentheses are skipped), else the first line."""
    front = _FRONT_MATTER.match(text)
    if front:
        match = _TITLE_FIELD.search(front.group(1))
        if match:
            return _clean_yaml_scalar(match.group(1), front.group(1)[match.end():])
    heading = _MD_HEADING.search(text)
    if heading:
        return heading.group(1).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    opening = []
    for line in lines:
        if len(line) > 70 or line.endswith((".", "!", "?", ";", ",", ":")):
            break
        if not (line.startswith("(") and line.endswith(")")):
            opening.append(line)
    return (opening[-1] if opening else lines[0][:120]) if lines else ""


_YAML_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|.)")
_YAML_SIMPLE = {"_": " ", "n": " ", "t": " ", '"': '"', "\\": "\\", "/": "/", " ": " ", "N": " ", "L": " ", "P": " "}


def _unescape(match: re.Match) -> str:
    code = match.group(1)
    if code[0] in "uUx" and len(code) > 1:
        return chr(int(code[1:], 16))
    return _YAML_SIMPLE.get(code, code)


def _clean_yaml_scalar(value: str, rest: str) -> str:
    """Enough of YAML for a title: quotes and folded continuation lines ("\\" at the end of a line)."""
    if value.startswith('"'):
        parts = [value[1:]]
        for line in rest.splitlines()[1:]:
            if not parts[-1].endswith("\\"):
                break
            parts[-1] = parts[-1][:-1]
            parts.append(line.strip().lstrip("\\"))
        joined = "".join(parts).rstrip('"')
        return " ".join(_YAML_ESCAPE.sub(_unescape, joined).split())
    return value.strip("'").strip()


class _HTMLText(HTMLParser):
    """Visible text of an HTML page: scripts and styles dropped, block elements become line breaks."""

    BLOCKS = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
              "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "dd", "dt", "hr", "title"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.hidden = 0
        self.in_title = False

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        if tag == "title":
            self.in_title = True
        if tag in self.BLOCKS:
            self.parts.append("\n\n" if tag in {"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6"} else "\n")
        if tag == "li":
            self.parts.append("- ")
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self.parts.append("#" * int(tag[1]) + " ")  # a Markdown heading, so chunking sees the structure

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1
        if tag == "title":
            self.in_title = False
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.in_title:
            self.title_parts.append(data)
        elif not self.hidden:
            self.parts.append(data)


def _html_text(raw: str) -> tuple[str, str]:
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    title = html.unescape(" ".join("".join(parser.title_parts).split()))
    if not title:
        title = _text_title(text)
    return text, title


def _pdf_text(data: bytes) -> tuple[str, tuple[tuple[int, int], ...], str]:
    """Text per page, pages separated by a form feed, with each page's span kept for citations."""
    import io

    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings about damaged files are noise here
    try:
        reader = PdfReader(io.BytesIO(data))
        texts = [(page.extract_text() or "") for page in reader.pages]
        meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except (FileNotDecryptedError, DependencyError):
        raise Unreadable("encrypted PDF (password-protected or copy-protected); save an unprotected copy") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise Unreadable(f"broken PDF ({type(exc).__name__}: {str(exc)[:80]})") from None
    parts: list[str] = []
    pages: list[tuple[int, int]] = []
    cursor = 0
    for number, page_text in enumerate(texts):
        if number:
            parts.append("\n\f\n")
            cursor += 3
        page_text = page_text.replace("\r\n", "\n").replace("\r", "\n")
        parts.append(page_text)
        pages.append((cursor, cursor + len(page_text)))
        cursor += len(page_text)
    text = "".join(parts)
    return text, tuple(pages), str(meta_title).strip() or _text_title(text)

