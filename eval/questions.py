"""Question files (JSON Lines): single questions and conversations, read into frozen `Question`s.

A line is `{"id", "question", "answers": [gold substrings], "unanswerable": bool, "split"}`, or a conversation
`{"id", "turns": [...], "answers": [...]}`, which is asked as its last turn with the earlier turns as history.
A malformed line is an error naming the file and line, never a silently skipped question.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from app.errors import VerbatimError
from app.lexical import STOPWORDS

SPLITS = ("dev", "test")


class QuestionFileError(VerbatimError):
    """A question file that is missing or has a line eval cannot score."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str  # what is asked (a conversation's last turn)
    answers: tuple[str, ...]  # gold substrings; any one in the first quote is a hit
    unanswerable: bool = False
    split: str | None = None
    history: tuple[str, ...] = ()  # a conversation's earlier turns
    kind: str | None = None

    @property
    def is_conversation(self) -> bool:
        return bool(self.history)


def parse_question(row: dict) -> Question:
    """One JSON object as a `Question`; raises ValueError saying what is wrong with it."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    if "turns" in row:
        turns = row["turns"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise ValueError('"turns" must be a non-empty list of questions')
        question, history = turns[-1], tuple(turns[:-1])
    else:
        question, history = row.get("question"), ()
        if not isinstance(question, str) or not question.strip():
            raise ValueError('needs a "question" (or "turns")')
    answers = row.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError('"answers" must be a list of non-empty strings')
    unanswerable = bool(row.get("unanswerable", False))
    if not unanswerable and not answers:
        raise ValueError('an answerable question needs at least one gold string in "answers"')
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f'"split" must be one of {", ".join(SPLITS)}, not {split!r}')
    if "id" not in row:
        raise ValueError('needs an "id"')
    return Question(str(row["id"]), question, tuple(answers), unanswerable, split, history, row.get("kind"))


def load_questions(path: Path) -> list[Question]:
    """Every question in the file, in order; ids must be unique."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QuestionFileError(f"cannot read question file {path} ({exc.strerror or exc})") from None
    questions: list[Question] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            question = parse_question(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            raise QuestionFileError(f"{path}, line {number}: {exc}") from None
        if question.id in seen:
            raise QuestionFileError(f"{path}, line {number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise QuestionFileError(f"{path} holds no questions")
    return questions


def select(questions: list[Question], split: str = "all", limit: int | None = None) -> list[Question]:
    """The questions of one split ("dev", "test" or "all"), the first `limit` of them if given."""
    chosen = questions if split == "all" else [q for q in questions if q.split == split]
    return chosen[:limit] if limit else chosen


_WORD = re.compile(r"\w+(?:[-']\w+)*", re.UNICODE)
_ABBREVIATION_DOT = re.compile(r"(?<=\b\w)\.(?=\w\b)")  # U.S. -> US.
_POSSESSIVE = re.compile(r"'s\b")
_KEPT = frozenset({"name", "list", "said"})  # function words to a reader, what a query is about to a user


def keyword_query(text: str) -> str:
    """A question as typed into a search box: its content words in lower case, without question words,
    function words, possessive 's or punctuation ("From what countries did the Norse originate?" ->
    "countries norse originate"). A question of function words only stays as it is."""
    words = _WORD.findall(_POSSESSIVE.sub("", _ABBREVIATION_DOT.sub("", text).lower()))
    kept = [w for w in words if w not in STOPWORDS or w in _KEPT]
    return " ".join(kept) if kept else text


def as_keywords(questions: list[Question]) -> list[Question]:
    """Each single question as its keyword query (`keyword_query`); conversations stay as written, since a
    follow-up's pointing words are what makes it one."""
    return [q if q.is_conversation else replace(q, question=keyword_query(q.question)) for q in questions]
