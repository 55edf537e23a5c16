"""Bring the external evaluation datasets into Verbatim's question-file format.

Why this exists: Verbatim's own eval questions were written by us, against our
own corpus.  To measure the system honestly we also evaluate on two public,
independently annotated QA sets (COVID-QA and a SQuAD 2.0 sample).  This
script is the single, reproducible step that turns the shared snapshots into
eval/datasets/<name>/, so anyone can re-create the files and see that nothing
was changed except the format.

Usage:
    python eval/datasets/convert.py SHARED_DATA_DIR

For each dataset it writes, next to this script:
    <name>/corpus/             byte-for-byte copies of the source documents
    <name>/questions.jsonl     {"id", "question", "answers", "unanswerable",
                                "split", "doc"} one object per line
    <name>/SOURCE.md           provenance, licence and what was changed
    <name>/LICENSE-Apache-2.0.txt   the source repository's licence, copied

Split rule (fixed, so it never depends on ordering or randomness):
    split = "dev" if int(sha256(id).hexdigest(), 16) % 10 < 3 else "test"
i.e. ~30% dev for tuning, ~70% held out as test.

Standard library only.  Deterministic and idempotent: running it twice gives
identical files, and stale corpus files from an earlier run are removed.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name in eval/datasets -> (folder in SHARED_DATA_DIR, licence file there, extra notes)
DATASETS = {
    "covid_qa": (
        "covid_qa",
        "LICENSE-Apache-2.0.txt",
        [
            "The Apache-2.0 licence covers the COVID-QA annotations. The documents in "
            "`corpus/` are CORD-19 / PMC papers and carry their own licences: 92 of the "
            "98 files state `License: cc-by` in their header; 6 state no licence "
            "(010 JAMA, 069 CDC summary, 071 CDC EID, 073 JACR pre-proof, "
            "085 Imperial College report, 090 Emerging Infectious Diseases). Check "
            "those before redistributing the corpus outside this project.",
            "All questions are answerable; answers are often whole sentences.",
        ],
    ),
    "squad2": (
        "haystack_squad2_small",
        "LICENSE-haystack-Apache-2.0.txt",
        [
            "The licence file is the Haystack repository's Apache-2.0 licence "
            "(source name `LICENSE-haystack-Apache-2.0.txt`, copied here as "
            "`LICENSE-Apache-2.0.txt`). The underlying SQuAD 2.0 text and "
            "annotations are CC BY-SA 4.0 (Rajpurkar et al., 2018, "
            "https://rajpurkar.github.io/SQuAD-explorer/); that licence text is "
            "not in the snapshot.",
            "Unanswerable questions (`is_impossible`) get `answers: []`; SQuAD's "
            "`plausible_answers` are deliberately not carried over.",
        ],
    ),
}


def split_for(qid):
    """Deterministic 30/70 dev/test assignment from the question id."""
    h = int(hashlib.sha256(qid.encode("utf-8")).hexdigest(), 16)
    return "dev" if h % 10 < 3 else "test"


def dedup(items):
    """Remove duplicates, keeping the first occurrence's position."""
    seen = set()
    out = []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def convert_question(src):
    unanswerable = bool(src["is_impossible"])
    return {
        "id": str(src["id"]),
        "question": src["question"],
        "answers": [] if unanswerable else dedup(src["answers"]),
        "unanswerable": unanswerable,
        "split": split_for(str(src["id"])),
        "doc": src["doc_file"],
    }


def copy_corpus(src_dir, dst_dir):
    dst_dir.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in src_dir.iterdir() if p.is_file())
    for stale in sorted(dst_dir.iterdir()):
        if stale.name not in names:
            stale.unlink()
    for name in names:
        shutil.copyfile(src_dir / name, dst_dir / name)
    return names


def write_source_md(path, name, src_folder, source_txt, licence_src, notes, n_docs, questions):
    n_unans = sum(q["unanswerable"] for q in questions)
    n_dev = sum(q["split"] == "dev" for q in questions)
    lines = [
        f"# {name}: provenance",
        "",
        f"Converted from the shared snapshot `{src_folder}/` by "
        "`eval/datasets/convert.py`. The source record (`SOURCE.txt`), verbatim:",
        "",
        "```",
        source_txt.rstrip("\n"),
        "```",
        "",
        "## What was changed",
        "",
        "- `corpus/`: byte-for-byte copies of the snapshot's corpus files, same names "
        f"({n_docs} files). The corpus files and the snapshot's `questions.jsonl` were "
        "prepared in the shared snapshot from the source file named above "
        "(one document per article).",
        "- `questions.jsonl`: format conversion only. Each snapshot row becomes "
        '`{"id", "question", "answers", "unanswerable", "split", "doc"}` with '
        "`answers` = the gold answer strings, deduplicated, order kept ([] when "
        "unanswerable), `unanswerable` = `is_impossible`, `doc` = `doc_file`. "
        "Dropped fields: `article_title`, `context_index`, `context_char_offset`. "
        "No question, answer or document text was edited.",
        '- `split`: `"dev" if int(sha256(id).hexdigest(), 16) % 10 < 3 else "test"` '
        "(id as UTF-8): ~30% dev for tuning, ~70% held-out test.",
        f"- Result: {len(questions)} questions ({n_unans} unanswerable), "
        f"{n_dev} dev / {len(questions) - n_dev} test.",
        "",
        "## Licence",
        "",
        f"`LICENSE-Apache-2.0.txt` (copied from the snapshot's `{licence_src}`).",
        "",
        "## Notes",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def convert(shared, name, src_folder, licence_src, notes):
    src = shared / src_folder
    dst = HERE / name
    dst.mkdir(parents=True, exist_ok=True)

    docs = copy_corpus(src / "corpus", dst / "corpus")

    with open(src / "questions.jsonl", encoding="utf-8") as f:
        questions = [convert_question(json.loads(line)) for line in f if line.strip()]
    missing = sorted({q["doc"] for q in questions} - set(docs))
    if missing:
        sys.exit(f"{name}: questions refer to missing docs: {missing[:5]}")
    with open(dst / "questions.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for q in questions:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")

    shutil.copyfile(src / licence_src, dst / "LICENSE-Apache-2.0.txt")
    source_txt = (src / "SOURCE.txt").read_text(encoding="utf-8")
    write_source_md(dst / "SOURCE.md", name, src_folder, source_txt, licence_src,
                    notes, len(docs), questions)

    n_dev = sum(q["split"] == "dev" for q in questions)
    print(f"{name}: {len(docs)} docs, {len(questions)} questions "
          f"({sum(q['unanswerable'] for q in questions)} unanswerable), "
          f"{n_dev} dev / {len(questions) - n_dev} test")


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    shared = Path(argv[1])
    for name, (src_folder, licence_src, notes) in DATASETS.items():
        convert(shared, name, src_folder, licence_src, notes)


if __name__ == "__main__":
    main(sys.argv)
