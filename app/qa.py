"""The one entry point: `QA.ask(question, history) -> Answer`, used by the UI, the CLI and eval.

A `QA` holds the current index and notices when a build publishes a new one: the next question loads it,
while questions already running finish on the index they started with. Follow-up questions ("Who funds
it?") are searched together with the conversation's earlier questions and the sentence the previous one was
answered with, and stay near the passages that answer came from.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import acronyms, calibration, scoring
from .answer import compose, passage_ranked, read_ranked, select_quotes, whole_passages
from .build import BuildReport, build
from .embedding import Embedder, default_embedder
from .errors import VerbatimError
from .documents import Unreadable, load_document
from .lexical import tokens
from .reader import PassageReaderLike, Reader, default_passage_reader, default_reader
from .records import Answer, Citation, Document, Hit
from .retrieval import retrieve
from .settings import Settings
from .store import IndexDir, Store, load_store

FOLLOW_UP_WEIGHT = 0.6  # weight of the previous question's vector in a follow-up's query vector
ANSWER_WEIGHT = 1.0  # weight of the sentence the previous question was answered with (chosen on dev follow-ups)
CONTEXT_BOOST = 0.08  # fused-score bonus for passages in the section the conversation is about
_ANAPHORA = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|this|that|these|those|he|him|his|she|her|there|then|the same|"
    r"the program|the initiative|the project|the agreement|the statement|the summit|the meeting)\b", re.I)
_ELLIPSIS = re.compile(r"^(and|what about|how about|what of|also|and what about)\b", re.I)


@dataclass(frozen=True)
class Search:
    """What retrieval found for one question: the store it used, the rewritten query, and the hits."""

    store: Store
    query: str
    hits: list[Hit]
    terms: list[str]  # of the question itself: a follow-up's sentences must cover what it asks now
    words: np.ndarray  # the question's own content word vectors, for the same reason
    vector: np.ndarray  # the question's, blended with the conversation's for a follow-up
    follow_up: bool


@dataclass(frozen=True)
class Draft:
    """A question's quotes before the verbatim check and the threshold, with their confidence."""

    search: Search
    citations: list[Citation]
    confidence: float


_SHIPPED = object()


class QA:
    """`reader`: the shipped sentence reader by default; None leaves quote choice and abstention to the fitted
    sentence scorer and confidence model (as when no reader weights ship), or a test's own `Reader`.
    `passage_reader`: the shipped one by default when the sentence reader is the shipped one (a test's own
    reader reads alone), None, or a test's own; it reads only where a weight is fitted or configured."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, reader=_SHIPPED,
                 passage_reader=_SHIPPED) -> None:
        self.settings = settings
        self.embedder = embedder or default_embedder()
        self.reader: Reader | None = default_reader() if reader is _SHIPPED else reader
        if passage_reader is _SHIPPED:
            passage_reader = default_passage_reader() if reader is _SHIPPED else None
        self.passage_reader: PassageReaderLike | None = passage_reader
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._unrelated: dict[Path, list[float]] = {}  # the bank's confidences, for the loaded build only
        self._calibration_lock = threading.Lock()
        self.documents = DocumentTexts(settings.corpus, int(settings.max_file_mb * 1e6))

    # --- the index ---------------------------------------------------------------------------------------

    def build(self, full: bool = False) -> BuildReport:
        report = build(self.settings, self.embedder, full=full)
        self._store = None if report.rebuilt else self._store
        return report

    def prepare(self) -> None:
        """Load the current build and ask it the unrelated bank now, so the first question is not slowed. An
        index that cannot load is left for that question to report."""
        if IndexDir(self.settings.index).current() is not None:
            try:
                self.threshold()
            except VerbatimError:
                pass

    def store(self) -> Store:
        """The current build, reloaded when a newer one has been published; cheap when nothing changed."""
        current = IndexDir(self.settings.index).current()
        store = self._store
        if store is not None and (current is None or store.folder == current):
            return store  # a vanished link keeps the last good index serving
        with self._lock:
            if self._store is None or self._store.folder != current:
                self._store = load_store(self.settings.index, self.embedder.model_id, self.embedder.dimension)
            return self._store

    # --- questions ---------------------------------------------------------------------------------------

    def ask(self, question: str, history: Sequence[str] = ()) -> Answer:
        """Answer `question` by quoting the corpus; `history` holds the conversation's earlier questions."""
        question, notice = clean_question(question, self.settings.answer.max_question_chars)
        if not question:
            return Answer(question, True, "Please type a question about the documents.", (), 0.0, notice, "")
        draft = self._draft(question, history)
        citations = [c for c in draft.citations if self.documents.verbatim(draft.search.store, c)]
        abstained = not citations or draft.confidence < self.threshold(draft.search.store)
        if abstained:  # related passages: one quote from each of the nearest three
            citations = [c for i, c in enumerate(citations)
                         if all(c.context_start != o.context_start or c.doc != o.doc for o in citations[:i])][:3]
        return compose(question, citations, abstained, draft.confidence, draft.search.query, notice, self.reader_name())

    def threshold(self, store: Store | None = None) -> float:
        """The confidence below which this index's answers abstain: the threshold fitted on dev, raised where
        this corpus answers unrelated questions confidently (`app.calibration`)."""
        settings, reader = self.settings.answer, self._judge()
        base = scoring.abstain_threshold(settings, reader)
        rule = scoring.unrelated_rule(settings, reader)
        if not rule:
            return base
        return calibration.corpus_threshold(base, self.unrelated_confidences(store or self.store()), rule)

    def unrelated_confidences(self, store: Store) -> list[float]:
        """The confidence of each bank question on this index: asked once per build, kept beside it."""
        with self._calibration_lock:
            if store.folder not in self._unrelated:
                key = calibration.cache_key(store.folder.name, self.embedder.query_id, self.reader_name(),
                                            scoring.weights(), asdict(self.settings.answer))
                values = calibration.cached(store.folder, key)
                if values is None:
                    bank = calibration.unrelated_questions()
                    values = [d.confidence for d in self._drafts(bank, [()] * len(bank), store)]
                    calibration.keep(store.folder, key, values)
                self._unrelated = {store.folder: values}
            return self._unrelated[store.folder]

    def reader_name(self) -> str | None:
        """The readers that choose the quote, as the answer JSON names them: the sentence reader, then the
        passage reader after " + " where it reads too; None where no reader reads."""
        settings = self.settings.answer
        if self.reader is None or not settings.reader or settings.whole_passages:
            return None
        return self.reader.name + (f" + {self.passage_reader.name}" if self.passage_weight() else "")

    def _judge(self) -> str | None:
        """The sentence reader whose fitted confidence decides abstention (the passage reader only moves the
        quote); None where no reader reads."""
        return self.reader.name if self.reader_name() is not None else None

    def passage_weight(self) -> float:
        """The passage reader's weight in the ranking; 0 where it does not read."""
        if self.reader is None or self.passage_reader is None:
            return 0.0
        return scoring.passage_weight(self.settings.answer, self.passage_reader.name)

    def _draft(self, question: str, history: Sequence[str]) -> "Draft":
        """The quotes a cleaned question would get, and the confidence that they answer it."""
        return self._drafts([question], [history], self.store())[0]

    def _drafts(self, questions: Sequence[str], histories: Sequence[Sequence[str]], store: Store) -> list["Draft"]:
        """`_draft` for several questions at once: the embedder and the reader run once for all of them."""
        settings = self.settings.answer
        searches = self.searches(questions, histories, store)
        if settings.whole_passages:
            return [Draft(s, whole_passages(store, s.hits, settings), s.hits[0].fused if s.hits else 0.0)
                    for s in searches]
        ranked = [scoring.score_sentences(store, s.hits[: settings.passages], q, s.vector, s.words,
                                          self.embedder.word_vectors) for q, s in zip(questions, searches)]
        reader = self.reader if self.reader_name() is not None else None
        read = [reader is not None and bool(candidates) for candidates in ranked]
        judged = list(ranked)  # what the confidence is computed from: the sentence reader's own ranking
        if reader is not None:
            reading = [i for i, r in enumerate(read) if r]
            asked = [searches[i].query if searches[i].follow_up else as_question(questions[i]) for i in reading]
            chosen = [ranked[i] for i in reading]
            weight = self.passage_weight()
            moved = passage_ranked(self.passage_reader, asked, store, chosen, settings, weight) if weight else []
            both = read_ranked(reader, asked + (asked if moved else []), store, chosen + moved, settings)  # one batch
            alone = both[:len(chosen)]
            marked = both[len(chosen):] if moved else alone
            for i, own, quoted in zip(reading, alone, marked):
                judged[i], ranked[i] = own, quoted
        drafts = []
        for question, search, candidates, own, was_read in zip(questions, searches, ranked, judged, read):
            features = scoring.confidence_features(store, own, question, search.terms, search.follow_up, was_read)
            conf = scoring.confidence(features, reader.name if was_read else None)
            drafts.append(Draft(search, select_quotes(store, candidates, settings), conf))
        return drafts

    def search(self, question: str, history: Sequence[str] = ()) -> "Search":
        """Retrieve passages for a cleaned question, rewriting a follow-up with the conversation."""
        return self.searches([question], [history], self.store())[0]

    def searches(self, questions: Sequence[str], histories: Sequence[Sequence[str]], store: Store) -> list["Search"]:
        """`search` for several questions at once, in one batch through the embedder."""
        settings = self.settings.answer
        plans = []
        for question, history in zip(questions, histories):
            context = [clean_question(q, settings.max_question_chars)[0] for q in history if q and q.strip()][-2:]
            follow_up = bool(context) and is_follow_up(question)
            own = acronyms.expand(as_question(question), store.acronyms)
            earlier = [acronyms.expand(as_question(q), store.acronyms) for q in context] if follow_up else []
            plans.append((question, context, follow_up, own, earlier))
        texts = [text for _, _, _, own, earlier in plans for text in (own, *earlier)]
        embedded = self.embedder.embed_query(texts)  # one batch: the model runs once for all the questions
        words = self.embedder.word_vectors(list(questions))
        out, at = [], 0
        for (question, context, follow_up, own, earlier), question_words in zip(plans, words):
            vectors = embedded[at:at + 1 + len(earlier)]
            at += 1 + len(earlier)
            conversation = " ".join(map(as_question, [question, *context]))  # each turn read as a question
            query = acronyms.expand(conversation, store.acronyms) if follow_up else own
            vector = vectors[0] + FOLLOW_UP_WEIGHT * vectors[1:].sum(axis=0) if follow_up else vectors[0]
            boost = None
            if follow_up:
                boost, answered = self._conversation_context(store, context[-1], earlier[-1], vectors[-1])
                vector = vector + ANSWER_WEIGHT * answered
            vector = (vector / max(float(np.linalg.norm(vector)), 1e-9)).astype(np.float32)
            hits = retrieve(store, query, vector, settings, boost)
            out.append(Search(store, query, hits, tokens(own), question_words, vector, follow_up))
        return out

    def _conversation_context(self, store: Store, previous: str, expanded: str,
                              vector: np.ndarray) -> tuple[dict[int, float], np.ndarray]:
        """Rows in the sections that the previous question's best passages came from, and the vector of the
        sentence it was answered with. A document's passages are contiguous rows, so only the neighbourhood
        of each hit is scanned."""
        boost: dict[int, float] = {}
        hits = retrieve(store, expanded, vector, self.settings.answer)
        best = scoring.score_sentences(store, hits[: self.settings.answer.passages], previous, vector,
                                       self.embedder.word_vectors([previous])[0], self.embedder.word_vectors)
        answered = store.sentence_vectors[best[0].sentence_row].astype(np.float32) if best else np.zeros_like(vector)
        for hit in hits[:2]:
            anchor = store.chunks[hit.row]
            boost[hit.row] = CONTEXT_BOOST
            for step in (-1, 1):
                row = hit.row + step
                while 0 <= row < len(store.chunks) and store.chunks[row].doc == anchor.doc:
                    if anchor.section and store.chunks[row].section == anchor.section:
                        boost[row] = CONTEXT_BOOST
                    row += step
        return boost, answered


def clean_question(question: str, max_chars: int) -> tuple[str, str | None]:
    """Strip control characters and surrounding space; cut over-long input, saying so."""
    if not isinstance(question, str):
        question = "" if question is None else str(question)
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in question)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > max_chars:
        return cleaned[:max_chars], f"Your question was {len(cleaned):,} characters; only the first {max_chars:,} were used."
    return cleaned, None


def as_question(text: str) -> str:
    """The text as the models read it: with a question mark where it has no closing punctuation. Search
    queries come without one ("who chaired the summit"), and the models learned from questions that all end
    in one: without it, dev SQuAD 2.0 hit@1 falls from 89.4% to 83.5%."""
    return text if not text or text[-1] in "?!.\"'”)" else f"{text}?"


def is_follow_up(question: str) -> bool:
    """A question that points back ("it", "they", "that program") or is too short to stand on its own."""
    return bool(_ANAPHORA.search(question) or _ELLIPSIS.match(question) or len(tokens(question)) <= 1)


class DocumentTexts:
    """Document texts as the loader reads them, cached by file size and mtime, for the verbatim check.

    A file edited since the build is not used (its offsets no longer apply); the index's own copy of the
    passage then vouches for the quote until the next build.
    """

    LIMIT = 32

    def __init__(self, corpus: Path, max_bytes: int) -> None:
        self.corpus = corpus
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, tuple[tuple[int, int], Document | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, sha256: str) -> Document | None:
        file = self.corpus / path
        try:
            stat = file.stat()
        except OSError:
            return None
        key = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == key:
                self._cache.move_to_end(path)
                return cached[1]
        try:
            doc = load_document(file, self.corpus, self.max_bytes)
        except Unreadable:
            doc = None
        doc = doc if doc is not None and doc.sha256 == sha256 else None
        with self._lock:
            self._cache[path] = (key, doc)
            while len(self._cache) > self.LIMIT:
                self._cache.popitem(last=False)
        return doc

    def verbatim(self, store: Store, citation: Citation) -> bool:
        """`text[start:end] == quote` for the citation's document (and for the indexed passage)."""
        offset = citation.start - citation.context_start
        if citation.context[offset:offset + len(citation.quote)] != citation.quote:
            return False
        doc = self.get(citation.doc, store.manifest["files"][citation.doc]["sha256"])
        return doc is None or doc.text[citation.start:citation.end] == citation.quote
