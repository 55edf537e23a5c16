"""What Verbatim must never do: cite or read outside its corpus, run code found in an index, listen beyond
this machine unless told to, or let markup from a document or a question into the page.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from app.cli import main
from app.embedding import HashEmbedder
from app.errors import IndexMismatch
from app.qa import QA
from app.settings import Settings
from app.store import IndexDir
from eval.questions import load_questions
from tests.conftest import ROOT, current_build, make_settings

SECRET = "The vault combination is seven-walrus-nine."
SECRET_QUESTION = "What is the vault combination?"



def checksum(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def rewrite(folder: Path, name: str, data: bytes | str) -> None:
    """Replace one index file and record its checksum in the manifest, as a deliberate forger would."""
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["artifacts"][name] = checksum(path)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


# --- citations stay inside the corpus --------------------------------------------------------------------


def test_citations_point_only_inside_the_corpus(seed_fake_qa):
    corpus = seed_fake_qa.settings.corpus.resolve()
    cited = 0
    for q in load_questions(ROOT / "eval" / "questions.jsonl"):
        for c in seed_fake_qa.ask(q.question, q.history).citations:
            path = PurePosixPath(c.doc)
            assert not path.is_absolute() and ".." not in path.parts and "\\" not in c.doc
            file = (corpus / c.doc).resolve()
            assert file.is_relative_to(corpus) and file.is_file()
            assert file.read_text(encoding="utf-8")[c.start:c.end] == c.quote
            cited += 1
    assert cited > 100


@pytest.fixture
def linked_corpus(tmp_path) -> QA:
    """A corpus with one document, a symlinked file and a symlinked folder pointing outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(f"# Vault\n\n{SECRET}\n", encoding="utf-8")
    settings = make_settings(tmp_path)
    (settings.corpus / "harbour.md").write_text(
        "# Harbour\n\nThe harbour master opens the north gate at dawn every day.\n", encoding="utf-8")
    (settings.corpus / "secret.md").symlink_to(outside / "secret.md")
    (settings.corpus / "vault").symlink_to(outside, target_is_directory=True)
    qa = QA(settings, HashEmbedder())
    qa.build()
    return qa


def test_symlinks_out_of_the_corpus_are_not_indexed(linked_corpus):
    qa = linked_corpus
    manifest = json.loads((current_build(qa) / "manifest.json").read_text(encoding="utf-8"))
    assert list(manifest["files"]) == ["harbour.md"]
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"secret.md", "vault"} and all("link" in r for r in skipped.values())
    for file in current_build(qa).iterdir():
        assert b"walrus" not in file.read_bytes(), f"the secret reached {file.name}"
    answer = qa.ask(SECRET_QUESTION)
    assert all("walrus" not in c.quote for c in answer.citations)


# --- an index is data, never code ------------------------------------------------------------------------


@pytest.fixture
def hnsw_qa(tmp_path) -> QA:
    """The seed corpus indexed with the approximate (FAISS file) index too, so every file type is present."""
    settings = Settings(corpus=make_settings(tmp_path, ROOT / "corpus").corpus, index=tmp_path / "index",
                        exact_search_limit=0)
    qa = QA(settings, HashEmbedder())
    qa.build()
    return qa


def test_index_files_hold_no_pickle(hnsw_qa):
    files = sorted(current_build(hnsw_qa).iterdir())
    assert {f.suffix for f in files} == {".json", ".jsonl", ".npy", ".npz", ".faiss"}
    for file in files:
        if file.suffix in (".npy", ".npz"):
            loaded = np.load(file, allow_pickle=False)
            arrays = [loaded[k] for k in loaded.files] if file.suffix == ".npz" else [loaded]
            assert all(a.dtype != object for a in arrays)
        elif file.suffix == ".json":
            json.loads(file.read_text(encoding="utf-8"))
        elif file.suffix == ".jsonl":
            for line in file.read_text(encoding="utf-8").splitlines():
                json.loads(line)
        else:
            assert not file.read_bytes().startswith(b"\x80"), "a pickle protocol header"
    assert hnsw_qa.ask("Where was the 10th annual U.S.-ASEAN Summit held?").answer


class Payload:
    """Unpickling this creates `marker`: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_pickle_planted_in_a_handed_index_is_refused_not_run(seed_fake_qa, tmp_path, monkeypatch, capsys):
    handed = tmp_path / "handed"
    shutil.copytree(seed_fake_qa.settings.index, handed, symlinks=True)
    folder = IndexDir(handed).current()
    marker = tmp_path / "code-ran"
    for name in ("chunk_vectors.npy", "sentence_vectors.npy"):
        target = folder / name
        np.save(target, np.array([Payload(marker)], dtype=object), allow_pickle=True)
        rewrite(folder, name, target.read_bytes())
    qa = QA(Settings(corpus=seed_fake_qa.settings.corpus, index=handed), HashEmbedder())
    with pytest.raises(IndexMismatch, match="python -m app build"):
        qa.ask("Where was the summit held?")
    monkeypatch.setattr("app.qa.default_embedder", HashEmbedder)
    code = main(["ask", "Where was the summit held?", "--no-build", "--index", str(handed),
                 "--corpus", str(seed_fake_qa.settings.corpus)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("verbatim: ") and err.count("\n") == 1 and "python -m app build" in err
    assert not marker.exists(), "loading the index ran code"


@pytest.fixture
def fake_qa_copy(tmp_path) -> tuple[QA, Path]:
    qa = QA(make_settings(tmp_path, ROOT / "corpus"), HashEmbedder())
    qa.build()
    return qa, current_build(qa)


FORGERIES = {  # a key path in manifest.json and the forged value
    "format": (("format_version",), 99),
    "model": (("model", "id"), "someone/else"),
    "dimension": (("model", "dimension"), 1024),
    "counts": (("counts", "chunks"), 10**6),
    "checksum": (("artifacts", "chunks.jsonl", "sha256"), "0" * 64),
    "garbage": ((), "{not json"),
    "missing": ((), None),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_manipulated_manifest_is_a_clear_error(fake_qa_copy, forgery, capsys, monkeypatch):
    qa, folder = fake_qa_copy
    path = folder / "manifest.json"
    keys, value = FORGERIES[forgery]
    if value is None:
        path.unlink()
    elif not keys:
        path.write_text(value, encoding="utf-8")
    else:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        inner = manifest
        for key in keys[:-1]:
            inner = inner[key]
        inner[keys[-1]] = value
        path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatch, match=r"python -m app build"):
        QA(qa.settings, HashEmbedder()).ask("Where was the summit held?")
    monkeypatch.setattr("app.qa.default_embedder", HashEmbedder)
    code = main(["ask", "Where was the summit held?", "--no-build",
                 "--corpus", str(qa.settings.corpus), "--index", str(qa.settings.index)])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.startswith("verbatim: ") and "Traceback" not in err


def test_a_handed_index_cannot_cite_outside_the_corpus(fake_qa_copy, tmp_path):
    """A forged chunk naming "../outside.md" must be refused on load, not quoted as a corpus citation."""
    qa, folder = fake_qa_copy
    text = f"# Vault\n\n{SECRET}\n"
    (tmp_path / "outside.md").write_text(text, encoding="utf-8")
    rows = [json.loads(line) for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()]
    target = max(range(len(rows)), key=lambda i: len(rows[i]["text"]))
    asked = rows[target]["text"][:300]
    start = text.index(SECRET)
    rows[target].update(doc="../outside.md", start=start, end=start + len(SECRET), text=SECRET,
                        sentences=[[start, start + len(SECRET)]] * len(rows[target]["sentences"]))
    rewrite(folder, "chunks.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"]["../outside.md"] = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "title": "Vault",
                                          "chunks": 1, "pages": None}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatch, match="outside"):
        QA(qa.settings, HashEmbedder()).ask(asked)


# --- the server listens on this machine only, unless told otherwise ---------------------------------------


@pytest.mark.parametrize("command", [[], ["serve"]], ids=["python -m app", "python -m app serve"])
def test_serving_defaults_to_loopback(seed_fake_qa, monkeypatch, command):
    """Without --host, both ways of starting the page hand 127.0.0.1 to the server."""
    bound = {}
    monkeypatch.setattr("app.qa.default_embedder", HashEmbedder)
    monkeypatch.setattr("app.server.Server.run", lambda server: bound.update(url=server.url))
    s = seed_fake_qa.settings
    assert main([*command, "--corpus", str(s.corpus), "--index", str(s.index)]) == 0
    assert bound == {"url": "http://127.0.0.1:7860/"}


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a listening socket on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_the_running_server_listens_on_loopback_only(seed_fake_qa, tmp_path):
    """`python -m app serve` as a user starts it: the socket is bound to 127.0.0.1, not 0.0.0.0."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("GRADIO_SERVER_NAME", None)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--no-build", "--port", str(port),
                             "--corpus", str(seed_fake_qa.settings.corpus), "--index", str(tmp_path / "none")],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not _listening(port) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _listening(port) == ["0100007F"], (tmp_path / "serve.log").read_text(errors="replace")[-2000:]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# --- markup from documents and questions is shown as text -------------------------------------------------


class Tags(HTMLParser):
    """Every tag and attribute name in a piece of HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def tags_in(html_text: str) -> Tags:
    tags = Tags()
    tags.feed(html_text)
    tags.close()
    return tags


@pytest.fixture
def hostile_corpus(tmp_path) -> QA:
    """Documents whose title, file name and text carry markup, and an unreadable file named with markup."""
    settings = make_settings(tmp_path)
    (settings.corpus / "<img src=x onerror=alert(1)>.md").write_text(
        "---\ntitle: <script>alert('title')</script>\n---\n\n# <b onmouseover=alert(2)>Harbour</b>\n\n"
        "The harbour master opens the north gate at dawn <script>alert('text')</script> every day.\n"
        "<img src=x onerror=alert(3)> The lighthouse keeper logs every passing ship.\n", encoding="utf-8")
    (settings.corpus / "<svg onload=alert(4)>.txt").write_text("", encoding="utf-8")
    qa = QA(settings, HashEmbedder())
    qa.build()
    return qa


def test_markup_in_documents_is_escaped_in_the_page(hostile_corpus):
    from app.render import answer_html, question_html, status_html
    from app.status import index_status

    question = "When does the harbour master open the north gate? <script>alert('q')</script>"
    answer = hostile_corpus.ask(question)
    first = answer.citations[0]
    assert "<script>" in first.quote and "<script>" in first.title and "onmouseover" in first.section
    assert first.doc.startswith("<img") and index_status(hostile_corpus.settings)["skipped"]
    page = question_html(question) + answer_html(answer, turn=1) + status_html(index_status(hostile_corpus.settings))
    found = tags_in(page)
    assert not found.tags & {"script", "img", "svg"}, found.tags
    assert not {a for a in found.attributes if a.startswith("on")}, found.attributes
    assert "&lt;script&gt;" in page and "onerror=alert(1)" in page  # shown as text, not dropped
