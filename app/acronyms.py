"""Acronyms learned from the corpus itself: "Free and Open Indo-Pacific (FOIP)" teaches FOIP <-> its long
form, so a question using either one finds text using the other. No hand-written list.
"""

from __future__ import annotations

import re
from typing import Iterable

_DEFINITION = re.compile(r"\(([A-Z][A-Za-z0-9&\-]{1,11})\)")
_WORD = re.compile(r"[A-Za-z0-9][\w'’.\-]*[\w]|[A-Za-z0-9]")
_SMALL = {"and", "of", "the", "for", "on", "in", "to", "a", "an", "&", "at", "with"}


def find_definitions(text: str) -> dict[str, str]:
    """Map each acronym defined in `text` as "Long Form (LF)" to its long form (Schwartz–Hearst style):
    the long form is the shortest run of words before the parenthesis whose initials spell the acronym."""
    found: dict[str, str] = {}
    for match in _DEFINITION.finditer(text):
        acronym = match.group(1)
        letters = [ch.lower() for ch in acronym if ch.isalpha()]
        if len(letters) < 2 or sum(ch.isupper() for ch in acronym) < 2:
            continue
        before = text[max(0, match.start() - 200):match.start()]
        words = list(_WORD.finditer(before))[-(len(letters) + 6):]
        take = _match_initials([w.group() for w in words], letters)
        if take:
            long_form = " ".join(before[words[-take].start():words[-1].end()].split())
            found.setdefault(acronym, long_form)
    return found


def _match_initials(words: list[str], letters: list[str]) -> int | None:
    """How many trailing words spell `letters` by their initials (small words may be skipped)."""
    for take in range(1, min(len(words), len(letters) + 6) + 1):
        candidate = [w for w in words[-take:] if w.lower() not in _SMALL]
        if not candidate or candidate[0] != words[-take]:
            continue  # a long form starts with a content word
        initials = [p[0].lower() for w in candidate for p in re.split(r"[-.]", w) if p]
        if initials == letters or [w[0].lower() for w in candidate] == letters:
            return take
    return None


def learn(texts: Iterable[str]) -> dict[str, str]:
    acronyms: dict[str, str] = {}
    for text in texts:
        for acronym, long_form in find_definitions(text).items():
            acronyms.setdefault(acronym, long_form)
    return acronyms


def expand(query: str, acronyms: dict[str, str]) -> str:
    """The query plus the other spelling of every acronym or long form it mentions. A query typed all in lower
    case, as into a search box ("acpheed full name"), names acronyms in lower case too: there, those of three
    letters or more match whatever their case (two-letter ones would match words: "or", "it", "us")."""
    extra: list[str] = []
    lowered = " ".join(query.lower().split())
    typed_lower = query == query.lower()
    for acronym, long_form in acronyms.items():
        flags = re.I if typed_lower and len(acronym) >= 3 else 0
        named = re.search(rf"\b{re.escape(acronym)}\b", query, flags)
        if named and long_form.lower() not in lowered:
            extra.append(long_form)
        elif long_form.lower() in lowered and not named:
            extra.append(acronym)
    return query if not extra else f"{query} ({'; '.join(extra)})"
