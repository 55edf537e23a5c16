"""Build eval/datasets/squad_absent/: questions about Wikipedia articles that are not in the corpus.

Why this exists: the unanswerable questions of the other sets ask about their own corpus (a figure the
readout never gives, SQuAD 2.0's adversarial near-misses). Questions about things the corpus never covers
are the other half of abstention, and the confidence threshold must decline them on any corpus. This set
is made from the SQuAD v1.1 *training* file's held-out articles (`train.examples.is_dev_article`: the
reader never trains on them): half of those articles are the corpus, questions on them are answerable;
questions on the other half are about articles that are absent, so the answer is to decline.

Usage:
    python eval/datasets/absent_articles.py [SQUAD_TRAIN_JSON]   (default: ../shared/data/squad_train/...)

Deterministic: articles are ordered by the sha256 of their title; even positions are indexed, odd ones
absent. Per article, the QUESTIONS_PER_ARTICLE questions with the lowest sha256 of their id are kept. The
split is by article, so dev and test share no document: in each half, positions 0 and 1 of every 5 are dev.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from train.examples import digest, is_dev_article  # noqa: E402  (the reader's held-out rule, not a copy of it)

SOURCE = ROOT.parent / "shared" / "data" / "squad_train" / "squad-v1.1-train.json"
OUT = HERE / "squad_absent"
QUESTIONS_PER_ARTICLE = 10


def article_text(article: dict) -> str:
    """Title line, then the paragraphs, one blank line apart (as the squad2 set's corpus files are laid out)."""
    return "\n\n".join([article["title"].replace("_", " ")] + [p["context"].strip() for p in article["paragraphs"]]) + "\n"


def build(source: Path, out: Path) -> dict:
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    held = sorted((a for a in data if is_dev_article(a["title"])), key=lambda a: digest(a["title"]))
    shutil.rmtree(out / "corpus", ignore_errors=True)  # stale files from an earlier run
    (out / "corpus").mkdir(parents=True, exist_ok=True)
    rows, present, absent = [], [], []
    for position, article in enumerate(held):
        indexed = position % 2 == 0
        half = present if indexed else absent
        split = "dev" if len(half) % 5 < 2 else "test"
        half.append(article["title"])
        doc = f"{len(present) - 1:03d}_{article['title']}.txt" if indexed else None
        if doc:
            (out / "corpus" / doc).write_text(article_text(article), encoding="utf-8")
        qas = [qa for p in article["paragraphs"] for qa in p["qas"]]
        for qa in sorted(qas, key=lambda qa: digest(qa["id"]))[:QUESTIONS_PER_ARTICLE]:
            answers = list(dict.fromkeys(a["text"] for a in qa["answers"])) if indexed else []
            rows.append({"id": qa["id"], "question": qa["question"].strip(), "answers": answers,
                         "unanswerable": not indexed, "split": split, "article": article["title"],
                         **({"doc": doc} if doc else {})})
    with (out / "questions.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"present": present, "absent": absent, "questions": len(rows),
            "dev": sum(r["split"] == "dev" for r in rows), "test": sum(r["split"] == "test" for r in rows)}


if __name__ == "__main__":
    summary = build(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE, OUT)
    print(json.dumps(summary, indent=1))
