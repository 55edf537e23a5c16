"""What is indexed, with which model and settings, and whether the corpus has changed since (no model load)."""

from __future__ import annotations

import time

from .documents import corpus_files, file_sha256, relpath
from .errors import IndexMissing
from .settings import Settings
from .store import IndexDir, read_manifest


def corpus_changes(settings: Settings, manifest: dict) -> dict[str, list[str]]:
    """Files added, changed or removed since the build (by content hash); skipped files are not changes."""
    skipped = {s["path"] for s in manifest.get("skipped", [])}
    files = manifest["files"]
    paths, _ = corpus_files(settings.corpus) if settings.corpus.is_dir() else ([], [])
    seen: set[str] = set()
    changes: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    for path in paths:
        rel = relpath(path, settings.corpus)
        seen.add(rel)
        if rel in skipped:
            continue
        try:
            sha = file_sha256(path)
        except OSError:
            continue
        if rel not in files:
            changes["added"].append(rel)
        elif files[rel]["sha256"] != sha:
            changes["changed"].append(rel)
    changes["removed"] = sorted(p for p in files if p not in seen)
    return changes


def indexed_files(settings: Settings, manifest: dict) -> list[dict]:
    """Each indexed document: path, title, passages, pages, and the file's size and modification time now."""
    out = []
    for path, info in sorted(manifest["files"].items()):
        try:
            stat = (settings.corpus / path).stat()
            size, modified = stat.st_size, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stat.st_mtime))
        except OSError:
            size = modified = None
        out.append({"path": path, "title": info["title"], "passages": info["chunks"], "pages": info.get("pages"),
                    "bytes": size, "modified": modified})
    return out


def index_status(settings: Settings) -> dict:
    folder = IndexDir(settings.index).current()
    if folder is None:
        raise IndexMissing(f"no index at {settings.index}; run `python -m app build`")
    manifest = read_manifest(folder)
    changes = corpus_changes(settings, manifest)
    stale = any(changes.values())
    counts = manifest["counts"]
    model = manifest["model"]
    summary = (
        f"{counts['documents']} documents, {counts['chunks']} passages, {counts['sentences']} sentences; "
        f"{model['id']} ({model['dimension']}d), {manifest['index']['type']} index; built {manifest['built_at']}"
    )
    if stale:
        summary += "\nThe corpus changed since: " + ", ".join(
            f"{len(v)} {k}" for k, v in changes.items() if v) + " (run `python -m app build`)"
    if manifest.get("skipped"):
        summary += f"\n{len(manifest['skipped'])} file(s) skipped: " + "; ".join(
            f"{s['path']} ({s['reason']})" for s in manifest["skipped"][:5])
    return {
        "index": str(folder), "files": indexed_files(settings, manifest), "documents": counts["documents"],
        "chunks": counts["chunks"],
        "sentences": counts["sentences"], "model": model, "index_type": manifest["index"],
        "chunking": manifest["chunking"], "built_at": manifest["built_at"], "stale": stale, "changes": changes,
        "skipped": manifest.get("skipped", []), "summary": summary,
    }
