"""The readers: cross-encoders that read the question together with a candidate. The sentence reader reads
one candidate sentence and says how likely it answers (a calibrated probability) and where in it the exact
answer is; the passage reader reads a whole passage and marks, in each of its sentences, the best answer span
and how strongly it marks it (a sentence that answers only in its passage's context: "This program dispatches
young civil servants").

It starts from the bundled all-MiniLM-L6-v2 (its word embeddings stay frozen and are read from the bundled
package); the shipped weights (`app/models/reader.safetensors`, trained by `python -m train` on SQuAD v1.1,
CC BY-SA 4.0) hold only what training changed: the kept encoder layers and two small heads. A mean-pooled
linear head scores the pair; a token head gives answer start and end. The passage reader is the same network
trained further on whole SQuAD passages (`python -m train.passage_reader`, `passage_reader.safetensors`).
Loaded offline, never pickled.

`Reader` is the protocol `QA` depends on; tests may hand in a tiny one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .embedding import bundled_model_path

MODELS = Path(__file__).with_name("models")
WEIGHTS = MODELS / "reader.safetensors"
MANIFEST = MODELS / "reader.json"
PASSAGE_WEIGHTS = MODELS / "passage_reader.safetensors"
PASSAGE_MANIFEST = MODELS / "passage_reader.json"
MAX_QUESTION_TOKENS = 40
MAX_TOKENS = 128
MAX_ANSWER_TOKENS = 24
PAIRS_PER_PASS = 32  # pairs of several questions in one forward pass: little padding, bounded memory
PASSAGES_PER_PASS = 8  # passages are up to 256 tokens: fewer to a pass


@dataclass(frozen=True)
class Reading:
    """The reader's verdict on one candidate: probability it answers, the answer's character span in it, and
    how sure its token head is where that answer starts."""

    probability: float
    span: tuple[int, int] | None  # offsets into the candidate text; None when no span stands out
    start_certainty: float = 0.0  # log-probability of the likeliest answer start (0: sure, or no token head)


@dataclass(frozen=True)
class PassageReading:
    """The passage reader on one passage: for each of its sentences, the best answer span inside it (offsets
    into the passage) and that span's start + end logit. Training normalised a question's spans over all of
    its passages together, so the scores compare across passages; -inf for a sentence past the token limit."""

    scores: tuple[float, ...]
    spans: tuple[tuple[int, int] | None, ...]


class Reader(Protocol):
    name: str

    def read(self, question: str, candidates: Sequence[str]) -> list[Reading]: ...


class PassageReaderLike(Protocol):
    name: str

    def read_passages(self, questions: Sequence[str], passages: Sequence[str],
                      sentences: Sequence[Sequence[tuple[int, int]]]) -> list[PassageReading]: ...


def build_net(layers: int):
    """The reader network on the bundled MiniLM body, cut to its first `layers` encoder layers."""
    import torch
    from torch import nn
    from transformers import AutoModel

    class ReaderNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(bundled_model_path()))
            self.bert.encoder.layer = self.bert.encoder.layer[:layers]
            self.bert.config.num_hidden_layers = layers
            hidden = self.bert.config.hidden_size
            self.rank = nn.Linear(hidden, 1)
            self.span = nn.Linear(hidden, 2)
            self.bert.embeddings.requires_grad_(False)  # frozen: shipped by the bundled package, not by us
            self.bert.pooler = None

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.rank(pooled).squeeze(-1), self.span(hidden)

    torch.manual_seed(0)
    return ReaderNet()


def trained_state(net) -> dict:
    """The parameters training changes: what the weights file holds (frozen embeddings are not shipped)."""
    return {k: v for k, v in net.state_dict().items() if not k.startswith("bert.embeddings.")}


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_model_path()))


def encode(tok, questions: Sequence[str], candidates: Sequence[str], max_tokens: int = MAX_TOKENS):
    """Token ids for (question, candidate) pairs, with candidate offsets for mapping spans back to text."""
    short = {q: tok.decode(tok(q, add_special_tokens=False, truncation=True, max_length=MAX_QUESTION_TOKENS)["input_ids"])
             for q in set(questions)}
    return tok([short[q] for q in questions], list(candidates), truncation="only_second",
               max_length=max_tokens, padding=True, pad_to_multiple_of=16,  # few shapes: small kernel caches
               return_offsets_mapping=True, return_tensors="pt")


def span_pairs(start_logits: np.ndarray, end_logits: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Start + end logit of every span over the token positions `idx` (rows: start, columns: end); -inf where
    the end comes first or the span is longer than MAX_ANSWER_TOKENS."""
    pair = start_logits[idx][:, None] + end_logits[idx][None, :]
    gap = idx[None, :] - idx[:, None]
    pair[(gap < 0) | (gap >= MAX_ANSWER_TOKENS)] = -np.inf
    return pair


def best_spans(start_logits: np.ndarray, end_logits: np.ndarray, candidate_mask: np.ndarray,
               offsets: np.ndarray) -> list[tuple[int, int] | None]:
    """Per row, the character span of the highest start+end logit pair inside the candidate (end >= start,
    at most MAX_ANSWER_TOKENS tokens)."""
    spans: list[tuple[int, int] | None] = []
    for row in range(len(start_logits)):
        idx = np.flatnonzero(candidate_mask[row])
        if not len(idx):
            spans.append(None)
            continue
        pair = span_pairs(start_logits[row], end_logits[row], idx)
        i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
        spans.append((int(offsets[row, idx[i], 0]), int(offsets[row, idx[j], 1])))
    return spans


def start_certainties(start_logits: np.ndarray, candidate_mask: np.ndarray) -> list[float]:
    """Per row, the log-softmax of the likeliest start over the candidate's tokens. The token head is trained
    on answering sentences only: sure of one start, the sentence holds an answer; spread out, it names none.
    A second signal for abstention beside the pooled probability (eval.fit weighs both)."""
    out = []
    for row in range(len(start_logits)):
        s = start_logits[row, candidate_mask[row]]
        out.append(-float(np.log(np.exp(s - s.max()).sum())) if len(s) else 0.0)
    return out


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): there the reader's passes take
    0.5-0.6 of float32's time with logits within 0.02; elsewhere bfloat16 is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


class CrossEncoderReader:
    """The shipped reader: loaded once, one batched forward pass per question over its candidates, in
    bfloat16 where the CPU has it natively (`bfloat16=None`), else float32."""

    def __init__(self, weights: Path = WEIGHTS, manifest: Path = MANIFEST, bfloat16: bool | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self.weights, self.manifest_path = Path(weights), Path(manifest)
        self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        self.name = self.manifest["name"]
        self.max_tokens = int(self.manifest.get("max_tokens", MAX_TOKENS))
        self.bfloat16 = native_bfloat16() if bfloat16 is None else bfloat16
        self._lock = threading.Lock()
        self._tokenizing = threading.Lock()
        self._loaded = None

    def _load(self):
        with self._lock:
            if self._loaded is None:
                import torch
                from safetensors.torch import load_file

                net = build_net(int(self.manifest["layers"]))
                state = load_file(str(self.weights))
                missing, unexpected = net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
                if unexpected or any(not k.startswith("bert.embeddings.") for k in missing):
                    raise ValueError(f"{self.weights} does not fit the reader network")
                net.eval()
                if self.bfloat16:
                    net.to(torch.bfloat16)
                self._loaded = (net, tokenizer(), torch)
            return self._loaded

    def read(self, question: str, candidates: Sequence[str]) -> list[Reading]:
        return self.read_pairs([question] * len(candidates), candidates)

    def read_pairs(self, questions: Sequence[str], candidates: Sequence[str]) -> list[Reading]:
        """Each question against its candidate, PAIRS_PER_PASS pairs of similar length to a forward pass
        (each pass is padded to its longest pair)."""
        order = sorted(range(len(candidates)), key=lambda i: len(questions[i]) + len(candidates[i]))
        readings: list[Reading | None] = [None] * len(candidates)
        for at in range(0, len(order), PAIRS_PER_PASS):
            rows = order[at:at + PAIRS_PER_PASS]
            for row, reading in zip(rows, self._forward([questions[i] for i in rows], [candidates[i] for i in rows])):
                readings[row] = reading
        return readings

    def _run(self, questions: Sequence[str], candidates: Sequence[str]):
        """One forward pass: the pooled logits, start and end logits per token, which tokens are the
        candidate's, and each token's character offsets in it."""
        net, tok, torch = self._load()
        with self._tokenizing:  # a fast tokenizer's padding settings are shared state: one caller at a time
            batch = encode(tok, questions, candidates, self.max_tokens)
        offsets = batch.pop("offset_mapping").numpy()
        segment = np.array([[sid == 1 for sid in batch.sequence_ids(i)] for i in range(len(candidates))])
        with torch.inference_mode():
            logits, span = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return logits.float().numpy(), span[..., 0].float().numpy(), span[..., 1].float().numpy(), segment, offsets

    def _forward(self, questions: Sequence[str], candidates: Sequence[str]) -> list[Reading]:
        if not candidates:
            return []
        logits, starts, ends, segment, offsets = self._run(questions, candidates)
        probs = 1.0 / (1.0 + np.exp(-logits))
        spans = best_spans(starts, ends, segment, offsets)
        return [Reading(float(p), s, c) for p, s, c in zip(probs, spans, start_certainties(starts, segment))]


class PassageReader(CrossEncoderReader):
    """The shipped passage reader: each question against whole passages, PASSAGES_PER_PASS to a pass."""

    def __init__(self, weights: Path = PASSAGE_WEIGHTS, manifest: Path = PASSAGE_MANIFEST,
                 bfloat16: bool | None = None) -> None:
        super().__init__(weights, manifest, bfloat16)

    def read_passages(self, questions: Sequence[str], passages: Sequence[str],
                      sentences: Sequence[Sequence[tuple[int, int]]]) -> list[PassageReading]:
        """Each question against its passage; `sentences` are each passage's sentence offsets."""
        order = sorted(range(len(passages)), key=lambda i: len(questions[i]) + len(passages[i]))
        out: list[PassageReading | None] = [None] * len(passages)
        for at in range(0, len(order), PASSAGES_PER_PASS):
            rows = order[at:at + PASSAGES_PER_PASS]
            _, starts, ends, segment, offsets = self._run([questions[i] for i in rows], [passages[i] for i in rows])
            for k, row in enumerate(rows):
                out[row] = sentence_marks(starts[k], ends[k], segment[k], offsets[k], sentences[row])
        return out


def sentence_marks(starts: np.ndarray, ends: np.ndarray, segment: np.ndarray, offsets: np.ndarray,
                   sentences: Sequence[tuple[int, int]]) -> PassageReading:
    """The best span inside each sentence of one read passage (a token belongs to the sentence its first
    character is in) and its start + end logit."""
    scores, spans = [], []
    for lo, hi in sentences:
        idx = np.flatnonzero(segment & (offsets[:, 0] >= lo) & (offsets[:, 0] < hi))
        if not len(idx):
            scores.append(float("-inf"))
            spans.append(None)
            continue
        pair = span_pairs(starts, ends, idx)
        i, j = np.unravel_index(int(np.argmax(pair)), pair.shape)
        scores.append(float(pair[i, j]))
        spans.append((int(offsets[idx[i], 0]), int(offsets[idx[j], 1])))
    return PassageReading(tuple(scores), tuple(spans))


def read_many(reader: Reader, questions: Sequence[str], candidates: Sequence[Sequence[str]],
              known: dict[tuple[str, str], Reading] | None = None) -> list[list[Reading]]:
    """Several questions' candidates: batched across questions for the shipped reader, question by question
    for any other (a test's). Pairs in `known` are not read again, and what is read is added to it: two
    rankings of the same sentences cost one reading of each."""
    known = {} if known is None else known
    todo = list(dict.fromkeys((q, t) for q, c in zip(questions, candidates) for t in c if (q, t) not in known))
    if isinstance(reader, CrossEncoderReader):
        known.update(zip(todo, reader.read_pairs([q for q, _ in todo], [t for _, t in todo])))
    else:
        for question in dict.fromkeys(q for q, _ in todo):
            texts = [t for q, t in todo if q == question]
            known.update(zip([(question, t) for t in texts], reader.read(question, texts)))
    return [[known[(q, t)] for t in c] for q, c in zip(questions, candidates)]


@lru_cache(maxsize=1)
def default_reader() -> Reader | None:
    """The shipped reader, or None when no weights ship (the fitted sentence scorer then decides alone)."""
    return CrossEncoderReader() if WEIGHTS.is_file() and MANIFEST.is_file() else None


@lru_cache(maxsize=1)
def default_passage_reader() -> PassageReader | None:
    """The shipped passage reader, or None when its weights do not ship (the sentence reader then reads alone)."""
    return PassageReader() if PASSAGE_WEIGHTS.is_file() and PASSAGE_MANIFEST.is_file() else None
