"""Adding documents to the corpus from the page: checked, given a safe name, written atomically.

The chat page hands over files a browser uploaded (a name the person chose and a temporary path); this module
decides what may enter the corpus folder. Only the formats the loader reads, up to the loader's size limit;
the name is reduced to plain letters, digits, dots, dashes and underscores, so it can neither leave the corpus
folder nor hide (a leading dot); a name already taken by other content gets a numbered suffix, and content
already in the corpus is not added twice. Each file is written under a hidden temporary name and renamed into
place, so a build running meanwhile never reads half a file. Indexing is the caller's next step (`QA.build`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .documents import SUFFIXES, corpus_files, file_sha256

MAX_NAME_CHARS = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Added:
    """One uploaded file: where it went in the corpus (`path`), or why it was refused (`reason`)."""

    name: str  # as the person's browser named it
    path: str | None = None  # relative to the corpus folder
    reason: str | None = None
    duplicate_of: str | None = None  # the same content was already in the corpus under this path


def safe_name(name: str) -> str:
    """ "../../Résumé of talks (final).PDF" -> "Resume-of-talks-final.pdf": a plain file name in the folder."""
    base = re.split(r"[\\/]", name)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = _UNSAFE.sub("-", ascii_stem).strip(".-_")[:MAX_NAME_CHARS].strip(".-_") or "document"
    return f"{stem}.{suffix.lower()}" if suffix else stem


def check(name: str, size: int, head: bytes, max_bytes: int) -> str | None:
    """Why a file may not be added (type or size), or None."""
    suffix = Path(safe_name(name)).suffix
    if suffix not in SUFFIXES:
        return f"not a supported type ({suffix or 'no extension'}); add .txt, .md, .html or .pdf files"
    if size > max_bytes:
        return f"too large ({size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB)"
    if size == 0:
        return "empty file"
    if suffix == ".pdf" and not head.startswith(b"%PDF-"):
        return "not a PDF file (its content does not start like one)"
    if suffix != ".pdf" and b"\x00" in head:
        return "binary data, not text"
    return None


def add_files(corpus: Path, files: Iterable[tuple[str, Path]], max_bytes: int) -> list[Added]:
    """Copy each (name, temporary path) into `corpus` under a safe, unused name; see the module docstring."""
    corpus.mkdir(parents=True, exist_ok=True)
    known = _hashes(corpus)
    out = []
    for name, source in files:
        try:
            size = source.stat().st_size
            with open(source, "rb") as handle:
                head = handle.read(4096)
        except OSError as exc:
            out.append(Added(name, reason=f"could not be read ({exc.strerror or exc})"))
            continue
        problem = check(name, size, head, max_bytes)
        if problem:
            out.append(Added(name, reason=problem))
            continue
        sha = file_sha256(source)
        if sha in known:
            out.append(Added(name, path=known[sha], duplicate_of=known[sha]))
            continue
        target = _copy_in(source, corpus, safe_name(name))
        known[sha] = target.name
        out.append(Added(name, path=target.name))
    return out


def _hashes(corpus: Path) -> dict[str, str]:
    """Content hash -> path of every corpus file, so the same document is not added twice."""
    paths, _ = corpus_files(corpus)
    found = {}
    for path in paths:
        try:
            found.setdefault(file_sha256(path), path.relative_to(corpus).as_posix())
        except OSError:
            continue
    return found


def _copy_in(source: Path, corpus: Path, name: str) -> Path:
    """Write `source` to a hidden temporary file, then link it in as `name`, or `stem-2.ext`, `stem-3.ext`,
    ... when that is taken (a hard link never replaces a file, so two uploads at once cannot collide)."""
    temporary = corpus / f".upload-{os.getpid()}-{os.urandom(6).hex()}"
    try:
        with open(source, "rb") as reader, open(temporary, "wb") as writer:
            for block in iter(lambda: reader.read(1 << 20), b""):
                writer.write(block)
            writer.flush()
            os.fsync(writer.fileno())
        stem, suffix = Path(name).stem, Path(name).suffix
        for n in range(1, 10_000):
            target = corpus / (name if n == 1 else f"{stem}-{n}{suffix}")
            try:
                os.link(temporary, target)
                return target
            except FileExistsError:
                continue
        raise OSError(f"no free name for {name}")
    finally:
        temporary.unlink(missing_ok=True)
