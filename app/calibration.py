"""Where a corpus puts questions it was never about, so that one abstention threshold serves every corpus.

A confidence of 0.3 is high on a readout and low on Wikipedia: the fitted confidence's scale shifts from
corpus to corpus. So every index, when it loads, is asked a fixed bank of unrelated general-knowledge
questions (`models/unrelated_questions.txt`, from SQuAD v1.1 train, CC BY-SA 4.0). Where this corpus answers
them confidently, the threshold rises to the bank's fitted quantile: a question is declined unless it beats
that share of unrelated ones. The rise is capped (both fitted on dev by `eval.fit`), so a corpus that does
answer the bank (all of Wikipedia) keeps answering; on a corpus the bank is foreign to, nothing changes.

Asking the bank takes seconds, so its answers are kept beside the build (`unrelated.json` in the build
folder), under a key of everything they depend on: the build, the model, the reader, the fitted weights,
the answer settings and the bank itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

BANK_FILE = Path(__file__).with_name("models") / "unrelated_questions.txt"
CACHE_FILE = "unrelated.json"


@lru_cache(maxsize=1)
def unrelated_questions() -> tuple[str, ...]:
    """The bank, without its comment header; empty when the file does not ship (no rise then)."""
    if not BANK_FILE.exists():
        return ()
    lines = (line.strip() for line in BANK_FILE.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def corpus_threshold(base: float, unrelated: Sequence[float], rule: Mapping | None) -> float:
    """`base`, raised to the rule's quantile of the bank's confidences on this corpus but not above its cap
    (and never lowered)."""
    if not rule or not len(unrelated):
        return base
    return max(base, min(float(rule["cap"]), float(np.quantile(unrelated, float(rule["quantile"])))))


def cache_key(*parts: object) -> str:
    """A digest of what the bank's confidences depend on (JSON-serialisable parts)."""
    text = json.dumps([*parts, unrelated_questions()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached(folder: Path, key: str) -> list[float] | None:
    """The confidences kept beside this build under `key`; None when absent, stale or unreadable."""
    try:
        kept = json.loads((folder / CACHE_FILE).read_text(encoding="utf-8"))
        return [float(v) for v in kept["confidences"]] if kept.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keep(folder: Path, key: str, confidences: Sequence[float]) -> None:
    """Write them beside the build, atomically; a read-only index just recomputes them next time."""
    private = folder / f".{CACHE_FILE}.{os.getpid()}"
    try:
        private.write_text(json.dumps({"key": key, "confidences": [round(float(v), 6) for v in confidences]}),
                           encoding="utf-8")
        private.replace(folder / CACHE_FILE)
    except OSError:
        private.unlink(missing_ok=True)
