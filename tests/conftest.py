"""Shared fixtures: a fake-embedder QA over tiny corpora (fast), and one real-model QA over the seed corpus."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.embedding import HashEmbedder, SentenceTransformerEmbedder
from app.qa import QA
from app.settings import Settings
from app.store import IndexDir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def make_settings(tmp_path: Path, corpus: Path | None = None) -> Settings:
    """Settings for a private corpus copy and index under `tmp_path`."""
    target = tmp_path / "corpus"
    if corpus is not None and not target.exists():
        shutil.copytree(corpus, target, symlinks=True)
    target.mkdir(exist_ok=True)
    return Settings(corpus=target, index=tmp_path / "index")


@pytest.fixture
def fake_qa(tmp_path) -> QA:
    """A QA over a copy of tests/data/corpus with the deterministic fake embedder, index built."""
    qa = QA(make_settings(tmp_path, DATA / "corpus"), HashEmbedder())
    qa.build()
    return qa


@pytest.fixture(scope="session")
def real_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def seed_qa(tmp_path_factory, real_embedder) -> QA:
    """The real model over a copy of the seed corpus (built once per test session)."""
    qa = QA(make_settings(tmp_path_factory.mktemp("seed"), ROOT / "corpus"), real_embedder)
    qa.build()
    return qa


@pytest.fixture(scope="module")
def seed_fake_qa(tmp_path_factory) -> QA:
    """The fake embedder over a private copy of the seed corpus (built once per module: ~0.3 s)."""
    qa = QA(make_settings(tmp_path_factory.mktemp("seedfake"), ROOT / "corpus"), HashEmbedder())
    qa.build()
    return qa


class ServedAPI:
    """The web app of a `QA` (chat page, REST and Gradio API), served on a free local port as
    `python -m app serve` serves it; `client()` opens one more Gradio API connection."""

    def __init__(self, qa: QA) -> None:
        import socket

        from app.server import Server

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.qa = qa
        self.server = Server(qa, port=port).start()
        self.url = self.server.url

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def seed_fake_api(seed_fake_qa):
    """`seed_fake_qa` behind the app's API (`/ask`), for tests that call it as a program would."""
    served = ServedAPI(seed_fake_qa)
    yield served
    served.close()


def current_build(qa: QA) -> Path:
    """The build folder `index/current` points at (there must be one)."""
    folder = IndexDir(qa.settings.index).current()
    assert folder is not None
    return folder


def tiny_training(main, tmp_path: Path, name: str, *argv: str) -> Path:
    """Run a training command's `main` with its checkpoint and output under tmp_path/name; the output folder."""
    out = tmp_path / name
    assert main([*argv, "--checkpoint", str(tmp_path / f"{name}-checkpoint"), "--out", str(out)]) == 0
    return out


def refuse_pickle(monkeypatch, weights: Path) -> None:
    """Check `weights` is safetensors (a JSON header, not a pickle stream), then make any use of pickle fail
    and forbid downloads for the rest of the test: what loads next must load offline, without pickle."""
    import json
    import pickle

    header = int.from_bytes(weights.read_bytes()[:8], "little")
    assert json.loads(weights.read_bytes()[8:8 + header])

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
