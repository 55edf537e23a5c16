"""SQuAD v1.1 questions as reader training examples: one question, its answering sentence, and negatives that
teach what matters.

Sentences are cut with the same splitter the index uses (app.chunking), so training sees the candidates the
app will show. Per question:
- the positive: the sentence holding the labelled answer (with the answer's span inside it). Every other
  sentence that contains the answer text is left out rather than called wrong (SQuAD's offsets here are the
  answer's first occurrence, see SOURCE.txt);
- `paragraph`: the sentence of the same paragraph most like the question (which sentence answers);
- `article`: the most alike sentence from another paragraph of the same article (look-alikes retrieval finds);
- `elsewhere`: the most alike sentence from another article (the answer is not there at all: abstention);
- for some questions, the article's title line (a heading is never an answer);
- with `swap_rate`, the positive sentence against the question with one of its names or years swapped for
  another ("capital of Malaysia" does not answer "What is the capital of Japan?"): the near miss that
  abstention has to catch.
With `keyword_rate`, that share of training questions is asked as typed into a search box, its content words
only ("countries norse originate", `eval.questions.keyword_query`): SQuAD's questions are all full sentences,
and search queries are not (stage 18 in the README: +1.2 points of mean dev hit@1 on keyword queries).
"Most alike" is TF-IDF cosine over the index's own word tokens.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import sparse

from app.chunking import split_sentences
from app.lexical import tokens
from app.qa import as_question
from eval.questions import keyword_query


@dataclass(frozen=True)
class Pair:
    question: str
    candidate: str
    label: float  # 1.0: the candidate answers
    span: tuple[int, int] | None = None  # the answer in the candidate, character offsets (positives)


@dataclass(frozen=True)
class Example:
    """One question with its positive first, then its negatives."""

    qid: str
    article: str
    pairs: tuple[Pair, ...]


@dataclass(frozen=True)
class _Sentence:
    article: int
    paragraph: int
    text: str
    start: int  # in its paragraph


def digest(text: str) -> int:
    """sha256 of the text as a number: the stable order and hash that picks articles and questions."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def is_dev_article(title: str) -> bool:
    """About 5% of articles, by a hash of the title, are held out for the dev figures."""
    return digest(title) % 20 == 0


def load_examples(path: Path, seed: int, title_rate: float = 0.25, swap_rate: float = 0.0,
                  keyword_rate: float = 0.0) -> tuple[list[Example], list[Example]]:
    """(train, dev) examples from a SQuAD v1.1 JSON file, in a seeded order; dev's questions stay as written."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    sentences: list[_Sentence] = []
    paragraphs: list[tuple[int, str, list[int]]] = []  # (article, context, sentence ids)
    for a, article in enumerate(data):
        for para in article["paragraphs"]:
            context = para["context"]
            ids = []
            for s, e in split_sentences(context):
                ids.append(len(sentences))
                sentences.append(_Sentence(a, len(paragraphs), context[s:e], s))
            paragraphs.append((a, context, ids))
    matrix, vocab, idf = _tfidf([s.text for s in sentences])
    rng = random.Random(seed)
    swapper = _Swapper(data, random.Random(seed + 1), swap_rate)  # its own stream: swap_rate 0 changes nothing
    questions = []
    p = 0
    for a, article in enumerate(data):
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append((a, p, qa))
            p += 1
    query = _tfidf_queries([qa["question"] for _, _, qa in questions], vocab, idf)
    train: list[Example] = []
    dev: list[Example] = []
    article_of = np.array([s.article for s in sentences])
    paragraph_of = np.array([s.paragraph for s in sentences])
    as_keywords = _keyword_draws(seed, keyword_rate)
    for lo in range(0, len(questions), 2000):
        sims = (query[lo:lo + 2000] @ matrix.T).toarray()
        for k, (a, p, qa) in enumerate(questions[lo:lo + 2000]):
            example = _example(data, paragraphs, sentences, a, p, qa, sims[k], article_of, paragraph_of, rng,
                               title_rate, swapper)
            if not example:
                continue
            if is_dev_article(data[a]["title"]):
                dev.append(example)
            elif as_keywords():
                train.append(replace(example, pairs=tuple(replace(pair, question=search_query(pair.question))
                                                          for pair in example.pairs)))
            else:
                train.append(example)
    rng.shuffle(train)
    return train, dev


def _keyword_draws(seed: int, rate: float) -> Callable[[], bool]:
    """Whether the next training question is asked as its search query: a draw from its own random stream, so
    rate 0 leaves every other draw, and the examples, as they were."""
    draws = random.Random(seed + 4)
    return lambda: rate > 0 and draws.random() < rate


def search_query(question: str) -> str:
    """The question as a search-box query, as the app's models read it (`as_question` adds the "?")."""
    return as_question(keyword_query(question))


def _example(data, paragraphs, sentences, a, p, qa, sims, article_of, paragraph_of, rng, title_rate, swapper):
    answer = qa["answers"][0]
    text, start = answer["text"], int(answer["answer_start"])
    _, context, ids = paragraphs[p]
    holder = next((i for i in ids if sentences[i].start <= start < sentences[i].start + len(sentences[i].text)), None)
    if holder is None or not text.strip():
        return None
    sent = sentences[holder]
    offset = start - sent.start
    if sent.text[offset:offset + len(text)] != text:  # the answer runs across a sentence break
        return None
    question = qa["question"].strip()
    pairs = [Pair(question, sent.text, 1.0, (offset, offset + len(text)))]
    low = text.lower()
    order = np.argsort(-sims)

    def pick(condition) -> int | None:
        for i in order[:400]:
            if sims[i] <= 0:
                break
            if condition(i) and low not in sentences[i].text.lower():
                return int(i)
        return None

    in_paragraph = [i for i in ids if i != holder and low not in sentences[i].text.lower()]
    if in_paragraph:
        best = max(in_paragraph, key=lambda i: sims[i])
        pairs.append(Pair(question, sentences[best].text, 0.0))
    same_article = pick(lambda i: article_of[i] == a and paragraph_of[i] != p)
    if same_article is not None:
        pairs.append(Pair(question, sentences[same_article].text, 0.0))
    elsewhere = pick(lambda i: article_of[i] != a)
    if elsewhere is None:
        elsewhere = rng.randrange(len(sentences))
    pairs.append(Pair(question, sentences[elsewhere].text, 0.0))
    if rng.random() < title_rate:
        pairs.append(Pair(question, data[a]["title"].replace("_", " "), 0.0))
    swapped = swapper.swap(question, sent.text, a)
    if swapped:
        pairs.append(Pair(swapped, sent.text, 0.0))
    return Example(qa["id"], data[a]["title"], tuple(pairs))


class _Swapper:
    """Questions with one name or year that the answering sentence shares replaced by another article's."""

    def __init__(self, data, rng: random.Random, rate: float) -> None:
        self.rng, self.rate = rng, rate
        self.names = [(a, w) for a, article in enumerate(data) for w in article["title"].split("_")
                      if w[:1].isupper() and w.isalpha() and len(w) > 3]

    def swap(self, question: str, sentence: str, article: int) -> str | None:
        if self.rate <= 0 or self.rng.random() >= self.rate:
            return None
        words = re.findall(r"\b(?:[A-Z][a-z]{3,}|(?:1[5-9]|20)\d\d)\b", question)
        shared = [w for i, w in enumerate(words) if w in sentence and not question.startswith(w)]
        if not shared:
            return None
        old = self.rng.choice(shared)
        if old.isdigit():
            new = str(int(old) + self.rng.choice([-1, 1]) * self.rng.randint(3, 40))
        else:
            new = self.rng.choice([w for a, w in self.names[:: 7] if a != article and w not in sentence] or ["Atlantis"])
        return re.sub(rf"\b{old}\b", new, question, count=1)


def _tfidf(texts: list[str]) -> tuple[sparse.csr_matrix, dict[str, int], np.ndarray]:
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, text in enumerate(texts):
        for t in set(tokens(text)):
            rows.append(r)
            cols.append(vocab.setdefault(t, len(vocab)))
    m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    df = np.bincount(cols, minlength=len(vocab))
    idf = np.log((1 + len(texts)) / (1 + df)).astype(np.float32) + 1.0
    m = m @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return sparse.csr_matrix(sparse.diags(1 / np.maximum(norms, 1e-9)) @ m), vocab, idf


def _tfidf_queries(texts: list[str], vocab: dict[str, int], idf: np.ndarray) -> sparse.csr_matrix:
    rows, cols = [], []
    for r, text in enumerate(texts):
        for t in set(tokens(text)):
            if t in vocab:
                rows.append(r)
                cols.append(vocab[t])
    m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    return sparse.csr_matrix(m @ sparse.diags(idf))


@dataclass(frozen=True)
class PassageExample:
    """One question against whole passages: its own paragraph (holding the answer at `span`) first, then the
    most alike other paragraph of its article that does not hold the answer text (what retrieval offers
    beside it). The passage reader learns which sentence of a passage answers, in its context. With `span`
    None no passage answers (`_no_answer`): the reader learns to say so."""

    qid: str
    question: str
    passages: tuple[str, ...]
    span: tuple[int, int] | None  # character offsets in passages[0]; None: no passage answers


NO_ANSWER_KINDS = ("look-alike", "elsewhere", "swapped")


def load_passage_examples(path: Path, seed: int, no_answer_rate: float = 0.0,
                          keyword_rate: float = 0.0) -> tuple[list[PassageExample], list[PassageExample]]:
    """(train, dev) passage examples from a SQuAD v1.1 JSON file, the same held-out articles as
    `load_examples`, in a seeded order. With `no_answer_rate`, that share of training questions becomes an
    example that no passage answers (dev gets it beside the answerable one), taking turns among three kinds
    of what abstention must catch: only the alike paragraph of its article, without its own (same topic, the
    answer not there); the most alike paragraph of another article (absent from the corpus); its own
    paragraph with a name or year of the question swapped for another ("capital of Malaysia" does not answer
    "the capital of Japan"). With `keyword_rate`, that share of training questions is asked as its keyword
    query (as in `load_examples`). The draws have their own random streams: rate 0 gives exactly the examples
    of earlier stages."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    paragraphs: list[tuple[int, str]] = []  # (article, context)
    questions = []
    for a, article in enumerate(data):
        for para in article["paragraphs"]:
            questions += [(a, len(paragraphs), qa) for qa in para["qas"]]
            paragraphs.append((a, para["context"]))
    matrix, vocab, idf = _tfidf([text for _, text in paragraphs])
    query = _tfidf_queries([qa["question"] for _, _, qa in questions], vocab, idf)
    article_of = np.array([a for a, _ in paragraphs])
    draws = random.Random(seed + 2)
    swapper = _Swapper(data, random.Random(seed + 3), 1.0)
    as_keywords = _keyword_draws(seed, keyword_rate)
    turn = 0
    train: list[PassageExample] = []
    dev: list[PassageExample] = []
    for lo in range(0, len(questions), 4000):
        sims = (query[lo:lo + 4000] @ matrix.T).toarray()
        for k, (a, p, qa) in enumerate(questions[lo:lo + 4000]):
            answer = qa["answers"][0]
            text, start = answer["text"], int(answer["answer_start"])
            context = paragraphs[p][1]
            if not text.strip() or context[start:start + len(text)] != text:
                continue
            alike = np.where(article_of == a, sims[k], -1.0)
            alike[p] = -1.0
            other = next((int(j) for j in np.argsort(-alike)[:5]
                          if alike[j] > 0 and text.lower() not in paragraphs[j][1].lower()), None)
            passages = (context,) if other is None else (context, paragraphs[other][1])
            example = PassageExample(qa["id"], qa["question"].strip(), passages, (start, start + len(text)))
            held_out = is_dev_article(data[a]["title"])
            if no_answer_rate > 0 and draws.random() < no_answer_rate:
                kind = NO_ANSWER_KINDS[turn % len(NO_ANSWER_KINDS)]
                turn += 1
                none = _no_answer(example, kind, other, paragraphs, sims[k], article_of, a, swapper)
                if none is not None and held_out:
                    dev.append(none)  # beside the question, not instead: dev's answerable ones stay those of rate 0
                example = example if none is None or held_out else none
            if not held_out and as_keywords():
                example = replace(example, question=search_query(example.question))
            (dev if held_out else train).append(example)
    random.Random(seed).shuffle(train)
    return train, dev


def _no_answer(example: PassageExample, kind: str, other: int | None, paragraphs, sims, article_of, article,
               swapper: "_Swapper") -> PassageExample | None:
    """`example` turned into one that no passage answers, of `kind`; None where it cannot be."""
    if kind == "look-alike":
        passages = (paragraphs[other][1],) if other is not None else None
    elif kind == "elsewhere":
        found = int(np.argmax(np.where(article_of != article, sims, -1.0)))
        passages = (paragraphs[found][1],) if article_of[found] != article else None
    else:
        swapped = swapper.swap(example.question, example.passages[0], article)
        if swapped is None:
            return None
        return PassageExample(example.qid, swapped, example.passages, None)
    return PassageExample(example.qid, example.question, passages, None) if passages else None
