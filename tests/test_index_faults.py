"""A damaged or foreign index is refused with a message that names the fix, and a build heals it; a failed
build leaves the previous index serving; two builds never run at once."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

import app.build
from app.embedding import HashEmbedder
from app.errors import BuildLocked, IndexMismatch, IndexMissing
from app.qa import QA
from app.store import IndexDir, load_store

from conftest import DATA, current_build, make_settings

QUESTION = "How much is the annual fee for a plot holder?"
REBUILD = "python -m app build"



def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def fresh_qa(qa: QA, embedder=None) -> QA:
    """A new process's view of the same folders (nothing cached)."""
    return QA(qa.settings, embedder or HashEmbedder())


def assert_answers(qa: QA) -> None:
    answer = qa.ask(QUESTION)
    assert not answer.abstained
    assert "annual fee of 25 euros" in answer.citations[0].quote


# --- refused on load, healed by a build ------------------------------------------------------------------------


def old_format(folder: Path) -> None:
    edit_manifest(folder, lambda m: m.update(format_version=m["format_version"] + 1))


def other_counts(folder: Path) -> None:
    edit_manifest(folder, lambda m: m["counts"].update(chunks=m["counts"]["chunks"] + 1))


def dropped_record(folder: Path) -> None:
    """One line fewer in chunks.jsonl, with its checksum updated, as a careless repair tool would leave it."""
    path = folder / "chunks.jsonl"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    import hashlib

    data = path.read_bytes()
    edit_manifest(folder, lambda m: m["artifacts"].update(
        {"chunks.jsonl": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}))


def truncated_vectors(folder: Path) -> None:
    path = folder / "chunk_vectors.npy"
    path.write_bytes(path.read_bytes()[:200])


def missing_lexical(folder: Path) -> None:
    (folder / "lexical.npz").unlink()


def unreadable_manifest(folder: Path) -> None:
    (folder / "manifest.json").write_text('{"format_version": 1, "mod', encoding="utf-8")


DAMAGE = {
    "format": (old_format, "format"),
    "truncated": (truncated_vectors, "chunk_vectors.npy"),
    "missing": (missing_lexical, "lexical.npz"),
    "manifest": (unreadable_manifest, "manifest"),
    "counts": (other_counts, "row counts"),
    "records": (dropped_record, "row counts"),
}
@pytest.mark.parametrize("name", [
    "format", "truncated", "missing", "manifest",
    "counts", "records",
])
def test_damaged_index_is_refused_then_healed_by_a_build(fake_qa, name):
    damage, says = DAMAGE[name]
    damage(current_build(fake_qa))
    qa = fresh_qa(fake_qa)
    with pytest.raises(IndexMismatch) as error:
        qa.ask(QUESTION)
    message = str(error.value)
    assert says in message and REBUILD in message
    report = qa.build()
    assert report.embedded_chunks == report.chunks > 0  # nothing could be reused
    assert_answers(qa)
    assert_answers(fresh_qa(fake_qa))


def test_index_from_another_model_is_refused(fake_qa):
    class OtherModel(HashEmbedder):
        model_id = "test/other-model"

    with pytest.raises(IndexMismatch) as error:
        fresh_qa(fake_qa, OtherModel()).ask(QUESTION)
    assert "test/hash-embedder" in str(error.value) and "test/other-model" in str(error.value)
    assert f"{REBUILD} --full" in str(error.value)


def test_index_of_another_dimension_is_refused_and_rebuilt(fake_qa):
    narrow = HashEmbedder(dimension=32)
    qa = fresh_qa(fake_qa, narrow)
    with pytest.raises(IndexMismatch) as error:
        qa.ask(QUESTION)
    assert "64" in str(error.value) and "32" in str(error.value) and REBUILD in str(error.value)
    report = qa.build()
    assert report.embedded_chunks == report.chunks
    assert load_store(qa.settings.index, narrow.model_id, 32).chunk_vectors.shape[1] == 32
    assert_answers(qa)


def test_no_index_is_a_clear_error(tmp_path):
    qa = QA(make_settings(tmp_path, DATA / "corpus"), HashEmbedder())
    with pytest.raises(IndexMissing, match="python -m app build"):
        qa.ask(QUESTION)


def test_current_link_to_a_deleted_build_is_a_missing_index(fake_qa):
    shutil.rmtree(current_build(fake_qa))
    with pytest.raises(IndexMissing, match="python -m app build"):
        fresh_qa(fake_qa).ask(QUESTION)
    fake_qa.build()
    assert_answers(fresh_qa(fake_qa))


# --- failed builds ---------------------------------------------------------------------------------------------


class FailingEmbedder(HashEmbedder):
    def embed(self, texts):
        raise RuntimeError("simulated embedding failure")


def test_failed_embedding_leaves_the_previous_index_serving(fake_qa):
    before = current_build(fake_qa)
    (fake_qa.settings.corpus / "garden-guide.md").write_text("# Garden\n\nThe fee is now 30 euros.\n", encoding="utf-8")
    failing = QA(fake_qa.settings, FailingEmbedder())
    with pytest.raises(RuntimeError, match="simulated"):
        failing.build()
    assert current_build(fake_qa) == before
    assert not [p for p in (fake_qa.settings.index / "builds").iterdir() if p.name.startswith(".tmp-")]
    assert_answers(fake_qa)  # the QA that was serving keeps answering from the old index
    assert_answers(fresh_qa(fake_qa))  # and so does a new one


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_failure_while_writing_leaves_no_partial_build(fake_qa, monkeypatch, error):
    before = current_build(fake_qa)
    written = []

    def write_then_fail(folder, *args, **kwargs):
        real_write_build(folder, *args, **kwargs)
        written.append(folder)
        raise error

    real_write_build = app.build.write_build
    monkeypatch.setattr(app.build, "write_build", write_then_fail)
    with pytest.raises(type(error)):
        fake_qa.build(full=True)
    assert written and not written[0].exists()  # the private folder is removed
    assert current_build(fake_qa) == before
    assert sorted(p.name for p in (fake_qa.settings.index / "builds").iterdir()) == [before.name]
    assert_answers(fresh_qa(fake_qa))


def test_leftover_private_folder_of_a_killed_build_never_becomes_current(fake_qa):
    before = current_build(fake_qa)
    leftover = fake_qa.settings.index / "builds" / ".tmp-20240101T000000-deadbeef"
    shutil.copytree(before, leftover)
    (leftover / "chunk_vectors.npy").write_bytes(b"half written")
    assert current_build(fake_qa) == before
    assert_answers(fresh_qa(fake_qa))
    fake_qa.build(full=True)
    assert not current_build(fake_qa).name.startswith(".tmp-")
    assert current_build(fake_qa) != leftover.resolve()
    assert_answers(fresh_qa(fake_qa))


# --- one build at a time -------------------------------------------------------------------------------------


def hold_lock(index: Path) -> tuple[threading.Thread, threading.Event]:
    """Another build holding the lock, in a thread, until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def run():
        with IndexDir(index).lock(wait_seconds=0):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(5)
    return thread, release


def test_second_build_fails_clearly_while_the_lock_is_held(fake_qa, monkeypatch):
    monkeypatch.setattr(app.build, "LOCK_WAIT_SECONDS", 0.3)
    before = current_build(fake_qa)
    thread, release = hold_lock(fake_qa.settings.index)
    try:
        with pytest.raises(BuildLocked) as error:
            fake_qa.build(full=True)
    finally:
        release.set()
        thread.join()
    assert "another build" in str(error.value) and "try again" in str(error.value)
    assert current_build(fake_qa) == before
    assert_answers(fake_qa)


def test_second_build_waits_for_the_first(fake_qa):
    before = current_build(fake_qa)
    thread, release = hold_lock(fake_qa.settings.index)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    try:
        report = fake_qa.build(full=True)
        finished_after_release = release.is_set()
    finally:
        release.set()
        thread.join()
        timer.cancel()
    assert finished_after_release  # it did not run while the other build held the lock
    assert report.embedded_chunks == report.chunks
    assert current_build(fake_qa) != before


def test_two_concurrent_builds_both_finish_and_leave_one_good_index(fake_qa):
    (fake_qa.settings.corpus / "ferry.txt").write_text("The ferry to Gull Island leaves at 7.15.\n", encoding="utf-8")
    reports, errors = [], []

    def run():
        try:
            reports.append(QA(fake_qa.settings, HashEmbedder()).build())
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.added for r in reports) == [0, 1]  # the second saw the first's result
    assert sorted(r.embedded_chunks for r in reports)[0] == 0
    qa = fresh_qa(fake_qa)
    assert "ferry.txt" in qa.store().manifest["files"]
    assert_answers(qa)
