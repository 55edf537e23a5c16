"""`python -m eval`: score a question set through the same `QA.ask` the chat and the CLI use.

    python -m eval [--dataset NAME] [--questions FILE] [--split dev|test|all] [--limit N]
                   [--results OUT.jsonl] [--report DIR] [--compare] [--sweep] [--failures]
                   [--corpus DIR] [--index DIR] [--no-build]

Without --dataset the seed questions (eval/questions.jsonl) are asked over corpus/ with index/; a dataset in
eval/datasets/NAME brings its own corpus/ and questions.jsonl and keeps its index in eval/datasets/NAME/index.
Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from app.embedding import Embedder, default_embedder
from app.errors import VerbatimError
from app.qa import QA
from app.settings import Settings

from .metrics import MAX_FALSE_ABSTENTION, Result
from .plot import abstention_plot, hit_at_k_plot
from .questions import QuestionFileError, as_keywords, load_questions, select
from .report import build_report, console, markdown
from .runner import Configuration, ask_all, configurations

HERE = Path(__file__).resolve().parent
DATASETS = HERE / "datasets"
SEED_QUESTIONS = HERE / "questions.jsonl"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval", description="Score a question set: quote accuracy, "
                                "abstention, verbatim citations and latency.")
    p.add_argument("--dataset", metavar="NAME", help="a set in eval/datasets/ (e.g. covid_qa, squad2) with its own "
                   "corpus and questions; default: the seed questions over corpus/")
    p.add_argument("--questions", metavar="FILE", help="question file, JSON Lines (default: the dataset's)")
    p.add_argument("--corpus", help="documents folder (default: the dataset's, else corpus/ or $VERBATIM_CORPUS)")
    p.add_argument("--index", help="index folder (default: the dataset's, else index/ or $VERBATIM_INDEX)")
    p.add_argument("--split", choices=["dev", "test", "all"], default="all", help="which questions (default all)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N questions (a quick run)")
    p.add_argument("--no-build", action="store_true", help="use the index as it is")
    p.add_argument("--results", metavar="OUT.jsonl", help="write one answer JSON per question")
    p.add_argument("--report", metavar="DIR", help="write report.json, report.md and PNG plots to DIR")
    p.add_argument("--compare", action="store_true", help="also run dense-only, lexical-only and fixed-chunk "
                   "baselines on the same questions")
    p.add_argument("--sweep", action="store_true", help="print the abstention trade-off for every threshold")
    p.add_argument("--failures", action="store_true", help="print every failure, not only the first ones")
    p.add_argument("--as-keywords", action="store_true", help="ask each single question as a search-box query: "
                   "its content words in lower case, without question words or punctuation (a robustness probe)")
    p.add_argument("--max-false-abstention", type=float, default=MAX_FALSE_ABSTENTION, metavar="RATE",
                   help="the sweep's bound on declined answerable dev questions (default %(default)s)")
    return p


def resolve(args) -> tuple[str, Path, Settings]:
    """The dataset's name, its question file and the settings for its corpus and index."""
    if args.dataset:
        folder = DATASETS / args.dataset
        if not (folder / "questions.jsonl").is_file():
            known = sorted(d.name for d in DATASETS.iterdir() if (d / "questions.jsonl").is_file())
            raise QuestionFileError(f"no dataset {args.dataset!r} in {DATASETS}; known: {', '.join(known)}")
        settings = Settings.from_env(args.corpus or str(folder / "corpus"), args.index or str(folder / "index"))
        return args.dataset, Path(args.questions or folder / "questions.jsonl"), settings
    return "seed", Path(args.questions or SEED_QUESTIONS), Settings.from_env(args.corpus, args.index)


def main(argv: Sequence[str] | None = None, embedder: Embedder | None = None) -> int:
    args = parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("eval: --limit must be at least 1", file=sys.stderr)
        return 2
    if not 0 <= args.max_false_abstention <= 1:
        print("eval: --max-false-abstention is a rate between 0 and 1", file=sys.stderr)
        return 2
    try:
        return evaluate(args, embedder)
    except VerbatimError as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # writing --results or --report
        print(f"eval: cannot write {exc.filename or 'the output'} ({exc.strerror or exc})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("eval: interrupted", file=sys.stderr)
        return 130


def evaluate(args, embedder: Embedder | None) -> int:
    dataset, questions_file, settings = resolve(args)
    questions = select(load_questions(questions_file), args.split, args.limit)
    if not questions:
        raise QuestionFileError(f"no {args.split} questions in {questions_file}")
    if args.as_keywords:
        questions = as_keywords(questions)
    embedder = embedder or default_embedder()
    configs = configurations(settings) if args.compare else [Configuration("full system", settings)]
    runs: dict[str, list[Result]] = {}
    threshold = 0.0
    for config in configs:
        qa = QA(config.settings, embedder)
        if not args.no_build:
            built = qa.build()
            print(f"index {config.settings.index} ({config.name}): {built.chunks} passages, "
                  f"{built.embedded_chunks} embedded now, {built.seconds:.1f}s", file=sys.stderr)
        if config.name == "full system":
            threshold = qa.threshold()  # this index's: the bank of unrelated questions may have raised it
        runs[config.name] = ask_all(qa, questions, label=config.name)
    results = runs["full system"]
    meta = {
        "dataset": dataset, "questions_file": str(questions_file), "corpus": str(settings.corpus),
        "index": str(settings.index), "split": args.split, "limit": args.limit,
        "as_keywords": args.as_keywords, "model": embedder.model_id,
        "answer_settings": asdict(settings.answer), "abstain_below": threshold,
        "chunking": settings.chunking.to_json(), "code": code_fingerprint(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    report = build_report(results, meta, threshold, runs if args.compare else None, args.max_false_abstention)
    if args.results:
        write_results(Path(args.results), results)
    if args.report:
        write_report(Path(args.report), report)
    print(console(report, show_sweep=args.sweep, show_failures=args.failures))
    return 0


def code_fingerprint() -> str:
    """A short hash of the program and its fitted weights, so a report says which code it measured."""
    digest = hashlib.sha256()
    app = HERE.parent / "app"
    for path in sorted(app.glob("*.py")) + sorted(app.glob("*.json")) + sorted(app.glob("models/*.json")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def write_results(path: Path, results: Sequence[Result]) -> None:
    """One line per question: the answer JSON (the `ask --json` contract) plus id, latency and confidence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for result in results:
            out.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")


def write_report(folder: Path, report: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(markdown(report), encoding="utf-8")
    abstention_plot(report["calibration"], folder / "abstention.png")
    series = {f"full system, {name}": m["hit_at_k"] for name, m in report["groups"].items()}
    for row in report["compare"] or ():
        if row["split"] == "all" and row["configuration"] != "full system":
            series[f"{row['configuration']}, all"] = row["hit_at_k"]
    hit_at_k_plot(series, folder / "hit_at_k.png")


if __name__ == "__main__":
    sys.exit(main())
