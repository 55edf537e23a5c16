"""Write app/models/unrelated_questions.txt: the bank of questions `app.calibration` asks of every index.

Why: a confidence of 0.3 means one thing on a readout and another on Wikipedia; what a corpus answers to
questions it was never about shows where its scale sits. The bank is general-knowledge questions, one per
SQuAD v1.1 *training* article, so they are about everything and nothing in particular. The reader's held-out
articles (`train.examples.is_dev_article`) are left out: `eval/datasets/squad_absent` asks about those.

Usage:
    python -m train.unrelated_questions [SQUAD_TRAIN_JSON] [--count N]

Deterministic: articles in order of the sha256 of their title, from each the question with the lowest sha256
of its id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .examples import digest, is_dev_article

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "squad_train" / "squad-v1.1-train.json"
OUT = ROOT / "app" / "models" / "unrelated_questions.txt"
HEADER = """\
# Questions about unrelated things, asked of every index to see how confidently it answers what it was
# never about (app/calibration.py). One per article of the SQuAD v1.1 training set (Rajpurkar et al., 2016,
# "SQuAD: 100,000+ Questions for Machine Comprehension of Text"), CC BY-SA 4.0; made by
# `python -m train.unrelated_questions`.
"""


def bank(data: list[dict], count: int) -> list[str]:
    articles = sorted((a for a in data if not is_dev_article(a["title"])), key=lambda a: digest(a["title"]))
    chosen = []
    for article in articles[:count]:
        qas = [qa for p in article["paragraphs"] for qa in p["qas"]]
        chosen.append(" ".join(min(qas, key=lambda qa: digest(qa["id"]))["question"].split()))
    return chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.unrelated_questions", description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    p.add_argument("--count", type=int, default=150)
    args = p.parse_args(argv)
    questions = bank(json.loads(args.data.read_text(encoding="utf-8"))["data"], args.count)
    OUT.write_text(HEADER + "".join(q + "\n" for q in questions), encoding="utf-8")
    print(f"wrote {len(questions)} questions to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
