"""The reader's quality/latency trade-off: `python -m eval.tradeoff [--datasets seed,squad2] [--split dev]
[--candidates 2,4,2+2]`.

For each configuration (the fitted sentence scorer alone, the sentence reader without the passage reader
where that ships, and the readers with the sentence reader reading the best K sentences for each K, or K and
then M more where it is sure of none of the K), the same questions through
`QA.ask`: hit@1 with abstention disabled (which sentence it picks), the exact answer's token F1, and answer
latency p50/p95 beside the floor measured in the same run and interleaved with it (encode the question + an
exact search of the same passage vectors). Tune on dev; the chosen K is then reported on test by `python -m eval`.
"""

from __future__ import annotations

import argparse
import sys

from app.embedding import default_embedder
from app.qa import QA
from app.settings import Settings

from .bench import flat_floor, percentile, timed_ms
from .fit import dataset_paths
from .metrics import Result, score
from .questions import load_questions, select
from .runner import ask_all


def measure(qa: QA, floor, questions) -> tuple[list[Result], list[float], list[float]]:
    """Every question once through `qa.ask`, each followed by the floor (the warm-up question's discarded)."""
    floor_ms: list[float] = []
    results = ask_all(qa, questions, after=lambda q: floor_ms.append(timed_ms(floor, q.question)))
    return results, [r.latency_ms for r in results], floor_ms[1:]


def reading(spec: str) -> tuple[str, dict]:
    """A candidate spec's name in the table and its AnswerSettings: "K" reads the scorer's best K; "K+M" reads
    M more where none of the K reaches the reader's `reader_sure`."""
    first, _, more = spec.partition("+")
    label = f"reader, {first} candidates" + (f" (+{more} when unsure)" if more else "")
    return label, {"reader_candidates": int(first), "reader_more": int(more or 0)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.tradeoff", description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="seed,squad2")
    p.add_argument("--split", choices=["dev", "test", "all"], default="dev")
    p.add_argument("--candidates", default="2,4,2+2",
                   help="reader candidate counts to compare; K+M reads K, then M more where none of K is sure")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions of each set")
    args = p.parse_args(argv)
    embedder = default_embedder()
    rows = []
    for name in args.datasets.split(","):
        corpus, index, questions_file = dataset_paths(name, None)
        settings = Settings(corpus=corpus, index=index)
        questions = select(load_questions(questions_file), args.split, args.limit)
        base = QA(settings, embedder)
        base.build()
        floor = flat_floor(base.store(), embedder, settings.answer.candidates)
        configs = [("sentence scorer alone", settings.with_answer(reader=False))]
        if base.passage_weight():
            configs.append(("sentence reader alone, 2 candidates", settings.with_answer(passage_weight=0.0)))
        for spec in args.candidates.split(","):
            label, overrides = reading(spec)
            configs.append((label, settings.with_answer(**overrides)))
        for label, config in configs:
            qa = QA(config, embedder, reader=base.reader, passage_reader=base.passage_reader)
            results, app_ms, floor_ms = measure(qa, floor, questions)
            m = score(results, float("-inf"))
            rows.append((name, label, m.hit1, m.span_f1, percentile(app_ms, 50), percentile(app_ms, 95),
                         percentile(floor_ms, 50), percentile(app_ms, 50) / percentile(floor_ms, 50)))
            print(f"{name} {args.split}, {label}: hit@1 {m.hit1:.1%}, span F1 {m.span_f1 or 0:.3f}, "
                  f"p50 {rows[-1][4]:.0f} ms, p95 {rows[-1][5]:.0f} ms, floor p50 {rows[-1][6]:.0f} ms",
                  file=sys.stderr, flush=True)
    header = "| set | configuration | hit@1 (no abstention) | span F1 | answer p50 | answer p95 | floor p50 | p50 / floor |"
    print(header)
    print("|" + "---|" * 8)
    for name, label, hit1, f1, p50, p95, floor50, ratio in rows:
        print(f"| {name} | {label} | {hit1:.1%} | {f1 or 0:.3f} | {p50:.0f} ms | {p95:.0f} ms | {floor50:.0f} ms | "
              f"{ratio:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
