"""The query tower: its training pipeline (a tiny run), its shipped weights (offline, no pickle, only the
layers it trained), and question vectors that live in the index's space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.embedding import QUERY_TOWER_FILE, SentenceTransformerEmbedder
from tests.conftest import DATA, refuse_pickle, tiny_training

TINY_SQUAD = DATA / "squad-tiny.json"


def train(tmp_path: Path, name: str, *extra: str) -> Path:
    from train.query_tower import main

    return tiny_training(main, tmp_path, name, "--data", str(TINY_SQUAD), "--steps", "4", "--batch", "4", "--top",
                        "1", "--save-every", "1", *extra)


def test_a_tiny_training_run_writes_the_top_layers_and_a_manifest_and_resumes_to_the_same_weights(tmp_path):
    from safetensors.numpy import load_file

    whole = train(tmp_path, "whole")
    manifest = json.loads((whole / "query_tower.json").read_text(encoding="utf-8"))
    assert manifest["steps"] == 4 and manifest["seed"] == 13 and manifest["top"] == 1
    assert len(manifest["data"]["sha256"]) == 64 and manifest["command"].startswith("python -m train.query_tower")
    weights = load_file(str(whole / "query_tower.safetensors"))
    assert weights and all(k.startswith("encoder.layer.5.") for k in weights)  # only what training changed

    train(tmp_path, "resumed", "--stop-at", "2")
    resumed = train(tmp_path, "resumed")  # the same command again: continues from step 2
    assert json.loads((resumed / "query_tower.json").read_text())["steps"] == 4
    again = load_file(str(resumed / "query_tower.safetensors"))
    for key in weights:
        assert np.allclose(again[key].astype(np.float32), weights[key].astype(np.float32), atol=2e-3), key


@pytest.fixture(scope="module")
def real() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


def test_the_shipped_tower_loads_offline_without_pickle_and_shares_the_untrained_layers(real, monkeypatch):
    assert QUERY_TOWER_FILE.is_file() and QUERY_TOWER_FILE.stat().st_size < 20e6
    refuse_pickle(monkeypatch, QUERY_TOWER_FILE)
    fresh = SentenceTransformerEmbedder()
    tower, bundled = fresh.query_model[0].auto_model, fresh.model[0].auto_model
    assert tower.embeddings is bundled.embeddings and tower.encoder.layer[0] is bundled.encoder.layer[0]
    assert tower.encoder.layer[-1] is not bundled.encoder.layer[-1]
    manifest = json.loads(QUERY_TOWER_FILE.with_suffix(".json").read_text(encoding="utf-8"))
    assert fresh.query_id.endswith(manifest["name"]) and manifest["data"]["licence"] == "CC BY-SA 4.0"


def test_word_vectors_are_the_same_tokenized_afresh_from_the_kept_ids_and_after_they_are_dropped(monkeypatch):
    import app.embedding

    texts = ["The Normans gave their name to Normandy.", "Funding was announced in May."]
    fresh = SentenceTransformerEmbedder()
    first = fresh.word_vectors(texts)
    assert [len(v) for v in first] == [4, 2]  # content word pieces only: no "the", "their", "was", "in", "may"
    kept = fresh.word_vectors(texts[::-1])
    assert all(np.array_equal(a, b) for a, b in zip(first, kept[::-1]))
    monkeypatch.setattr(app.embedding, "WORD_IDS_CACHED", 1)
    again = fresh.word_vectors(["Another sentence entirely.", texts[0]])
    assert np.array_equal(again[1], first[0]) and list(fresh._word_ids) == [texts[0]]  # the last one used stays


def test_question_vectors_find_the_answering_sentence_among_the_bundled_models_sentence_vectors(real):
    sentences = [
        "The meeting took place in Kuala Lumpur on 26 October 2025.",
        "Prime Minister Takaichi made her first visit to the region as leader.",
        "Japan pledged support for maritime security cooperation in the region.",
        "The leaders adopted a joint statement on artificial intelligence.",
    ]
    questions = ["Was this her first trip to the region?", "What did Japan pledge support for?",
                 "What did the leaders adopt a statement on?"]
    answers = [1, 2, 3]
    vectors = real.embed(sentences)
    queries = real.embed_query(questions)
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)
    assert list(np.argmax(queries @ vectors.T, axis=1)) == answers
    # the same space as the bundled model's own question vectors, not a new one
    assert np.all(np.sum(queries * real.embed(questions), axis=1) > 0.6)
