"""Fit the sentence scorer and the confidence model (app/scoring.py) on the DEV splits, write app/scoring.json;
with a shipped reader, fit how its verdict combines with the scorer's, the confidence model over both, and
the reader's abstention threshold, the same way; with a passage reader too, choose its weight in the ranking
the quote is chosen from (abstention stays the sentence reader's).

    python -m eval.fit [--datasets seed,squad2,covid_qa,wh_readouts,squad_absent] [--max-false-abstention 0.05]
                       [--unrelated-quantile Q ...] [--reader-only]

Only dev questions are read; the test splits stay held out for `python -m eval`. Both models are logistic
regressions on generic features, fitted with plain NumPy (Newton steps, L2). The abstention threshold is
the highest one whose false-abstention rate on dev answerable questions stays under the given bound in every
question set; for the reader, each set's index is also asked the unrelated bank (app/calibration.py) and the
cap on the rise it may cause is chosen under the same bound, on the sets it raises.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from app import calibration, scoring
from app.answer import mark_passages, quote_span, read_passages, read_ranked
from app.embedding import default_embedder
from app.qa import QA, clean_question
from app.settings import Settings

from .metrics import contains_gold
from .questions import Question, load_questions

ROOT = Path(__file__).resolve().parent.parent


def dataset_paths(name: str, index_root: Path | None) -> tuple[Path, Path, Path]:
    """(corpus, index, questions) of the seed set or of eval/datasets/NAME, as `python -m eval` uses them."""
    if name == "seed":
        corpus, index, questions = ROOT / "corpus", ROOT / "index", ROOT / "eval" / "questions.jsonl"
    else:
        folder = ROOT / "eval" / "datasets" / name
        corpus, index, questions = folder / "corpus", folder / "index", folder / "questions.jsonl"
    return corpus, (index_root / name if index_root else index), questions

L2 = 1.0
CONFIDENCE_SIGNS = (1, 1, 1, 1, -1, 1, -1)  # in scoring.CONFIDENCE_FEATURES order
READER_CONFIDENCE_SIGNS = CONFIDENCE_SIGNS + (1, 1)  # then reader_logit, start_certainty


def logistic(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, signs: tuple[int, ...],
             l2: float = L2) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression; returns (weights, bias).

    `signs` fixes the direction of each feature's weight (+1, -1, 0 for free): more coverage or a higher
    best score must never lower confidence, whatever quirk of a small dev set says otherwise. Features are
    standardised for the fit, so the penalty does not favour those that happen to have a wide range.
    """
    from scipy.optimize import minimize

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    X = np.hstack([(x.astype(np.float64) - mean) / scale, np.ones((len(x), 1))])
    sample_weight = sample_weight * len(sample_weight) / sample_weight.sum()  # mean 1: L2 means the same at any size
    reg = np.full(X.shape[1], l2)
    reg[-1] = 0.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ w
        p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
        nll = np.sum(sample_weight * (np.logaddexp(0, z) - y * z)) + 0.5 * float(reg @ (w * w))
        return nll / len(y), (X.T @ (sample_weight * (p - y)) + reg * w) / len(y)

    bounds = [(0, None) if s > 0 else (None, 0) if s < 0 else (None, None) for s in signs] + [(None, None)]
    result = minimize(loss, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    weights = result.x[:-1] / scale
    return weights, float(result.x[-1] - weights @ mean)


def quote_holds_gold(store, cand: scoring.Candidate, answers) -> bool:
    """Whether the quote the app would make of this sentence (`answer.quote_span`) holds a gold answer."""
    return contains_gold(store.chunks[cand.hit.row].text_at(*quote_span(store, cand)), answers)


def scorer_ranked(qa: QA, q: Question):
    """A question cleaned and searched as the app does, its sentences ranked by the fitted scorer, and the
    question as the readers read it (a follow-up as the conversation rewrote it): (question, search, ranked,
    asked)."""
    settings = qa.settings.answer
    question, _ = clean_question(q.question, settings.max_question_chars)
    search = qa.search(question, q.history)
    ranked = scoring.score_sentences(search.store, search.hits[: settings.passages], question, search.vector,
                                     search.words, qa.embedder.word_vectors)
    return question, search, ranked, search.query if search.follow_up else question


def collect(qa: QA, questions) -> list[dict]:
    """Per dev question: sentence features, which sentences hold a gold answer, and the search."""
    out = []
    for q in questions:
        question, _ = clean_question(q.question, qa.settings.answer.max_question_chars)
        search = qa.search(question, q.history)
        hits = search.hits[: qa.settings.answer.passages]
        features, where = scoring.sentence_features(search.store, hits, question, search.vector, search.words,
                                                      qa.embedder.word_vectors)
        labels = [quote_holds_gold(search.store, scoring.Candidate(0.0, row, hit, index), q.answers)
                  for hit, index, row in where]
        out.append({"q": q, "question": question, "search": search, "features": features, "where": where,
                    "labels": np.asarray(labels, dtype=bool)})
    return out


def fit_sentence(rows_by_set: dict[str, list[dict]], l2: float = 0.1) -> tuple[np.ndarray, float]:
    """Listwise: maximise, per question, the softmax probability of the sentences holding a gold answer —
    the objective that matches picking one best sentence. Each set weighs the same, so the long COVID-QA
    list does not drown the seed questions. (The bias cannot matter to a ranking; it is set so that scores
    stay near the old scale.)"""
    from scipy.optimize import minimize

    groups = []
    for rows in rows_by_set.values():
        usable = [row for row in rows if not row["q"].unanswerable and row["labels"].any() and not row["labels"].all()]
        groups += [(row["features"].astype(np.float64), row["labels"], 1.0 / len(usable)) for row in usable]
    total_weight = sum(weight for _, _, weight in groups)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.5 * l2 * float(w @ w), l2 * w
        for x, labels, weight in groups:
            z = x @ w
            e = np.exp(z - z.max())
            p_all = e / e.sum()
            p_pos = np.where(labels, e, 0.0) / e[labels].sum()
            total -= weight * float(np.log(e[labels].sum() / e.sum())) / total_weight
            grad = grad + weight * (x.T @ (p_all - p_pos)) / total_weight
        return total, grad

    result = minimize(loss, np.zeros(groups[0][0].shape[1]), jac=True, method="L-BFGS-B")
    return result.x, -float(np.median(np.concatenate([x @ result.x for x, _, _ in groups])))


def fit_confidence(qa_by_set: dict, rows_by_set: dict) -> tuple[np.ndarray, float, list[tuple]]:
    """Label 1: answerable and the best sentence holds the answer; 0: unanswerable. Each set weighs the same."""
    xs, ys, ws, kinds = [], [], [], []
    for name, rows in rows_by_set.items():
        qa = qa_by_set[name]
        batch = []
        for row in rows:
            search = row["search"]
            candidates = scoring.score_sentences(search.store, search.hits[: qa.settings.answer.passages],
                                                 row["question"], search.vector, search.words, qa.embedder.word_vectors)
            feats = scoring.confidence_features(search.store, candidates, row["question"], search.terms,
                                                search.follow_up)
            hit = bool(candidates) and _holds_gold(row, candidates[0])
            batch.append((feats, row["q"].unanswerable, hit))
        for label_kind in (True, False):
            part = [b for b in batch if b[1] == label_kind]
            for feats, unanswerable, hit in part:
                xs.append(feats)
                ys.append(0.0 if unanswerable else 1.0)
                ws.append(1.0 / len(part))
                kinds.append((name, unanswerable, hit))
    w, b = logistic(np.vstack(xs), np.asarray(ys), np.asarray(ws), signs=CONFIDENCE_SIGNS)
    probs = 1 / (1 + np.exp(-(np.vstack(xs) @ w + b)))
    return w, b, [(p, *k) for p, k in zip(probs, kinds)]


def _holds_gold(row: dict, cand: scoring.Candidate) -> bool:
    for (hit, index, _), label in zip(row["where"], row["labels"]):
        if hit.row == cand.hit.row and index == cand.index:
            return bool(label)
    return False


def choose_threshold(scored: list[tuple], max_false: float) -> float:
    """The highest threshold whose false abstention on answerable dev questions stays <= max_false in every
    question set: a corpus whose questions are phrased unlike its text (the seed set's paraphrases) must not
    pay for the others' easy ones."""
    names = sorted({s[1] for s in scored})
    best = 0.0
    for t in np.arange(0.0, 1.0, 0.01):
        rates = []
        for name in names:
            answerable = [p for p, n, unans, _ in scored if n == name and not unans]
            if answerable:
                rates.append(sum(p < t for p in answerable) / len(answerable))
        if rates and max(rates) <= max_false:
            best = float(t)
    return round(best, 2)


def collect_read(qa: QA, questions) -> list[dict]:
    """Per dev question: the scorer's best sentences as the reader read them (scorer logit, reader logit),
    which of them hold a gold answer, and the search — everything the reader's fit needs, read once. It reads
    what the app does (`answer.read_ranked` with the same settings), so the confidence is fitted on the
    ranking the app will show."""
    settings = qa.settings.answer
    out = []
    for q in questions:
        question, search, ranked, asked = scorer_ranked(qa, q)
        read = [c for c in read_ranked(qa.reader, [asked], search.store, [ranked], settings)[0]
                if c.probability is not None] if ranked else []
        labels = [quote_holds_gold(search.store, c, q.answers) for c in read]
        features = np.array([[c.prior, scoring.logit(c.probability)] for c in read], np.float64)
        out.append({"q": q, "question": question, "search": search, "read": read,
                    "features": features.reshape(-1, len(scoring.READER_FEATURES)),
                    "labels": np.asarray(labels, dtype=bool)})
    return out


READER_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # per unit of scorer logit


def choose_passage_weight(qa_by_set: dict, dev_by_set: dict) -> float:
    """The passage reader's weight (scorer weight 1) with the best mean first-sentence accuracy over the sets'
    answerable dev questions, each set weighing the same; ties go to the smaller weight (0: it does not read).
    Each question's passages are read once and every weight replayed on those readings."""
    rates: dict[float, list[float]] = {w: [] for w in READER_WEIGHTS}
    for name, qa in qa_by_set.items():
        settings, firsts = qa.settings.answer, {w: [] for w in READER_WEIGHTS}
        for q in dev_by_set[name]:
            if q.unanswerable:
                continue
            _, search, ranked, asked = scorer_ranked(qa, q)
            if not ranked:
                continue
            readings = read_passages(qa.passage_reader, [asked], search.store, [ranked], settings.passage_reads)[0]
            for w in READER_WEIGHTS:
                first = mark_passages(search.store, ranked, readings, w)[0]
                firsts[w].append(quote_holds_gold(search.store, first, q.answers))
        for w in READER_WEIGHTS:
            rates[w].append(sum(firsts[w]) / max(len(firsts[w]), 1))
    scores = {w: float(np.mean(r)) for w, r in rates.items()}
    print("passage reader weight -> mean dev first-sentence accuracy: "
          + ", ".join(f"{w}: {a:.3f}" for w, a in scores.items()), file=sys.stderr)
    return max(READER_WEIGHTS, key=lambda w: (round(scores[w], 6), -w))


def choose_combination(read_by_set: dict) -> tuple[np.ndarray, float]:
    """The reader weight (scorer weight 1) with the best mean first-sentence accuracy over the sets' answerable
    dev questions; ties go to the smaller weight."""
    def accuracy(weight: float) -> float:
        rates = []
        for rows in read_by_set.values():
            firsts = [bool(r["labels"][int(np.argmax(r["features"] @ (1.0, weight)))]) for r in rows
                      if not r["q"].unanswerable and len(r["read"])]
            rates.append(sum(firsts) / max(len(firsts), 1))
        return float(np.mean(rates))

    scores = {w: accuracy(w) for w in READER_WEIGHTS}
    print("reader weight -> mean dev first-sentence accuracy: "
          + ", ".join(f"{w}: {a:.3f}" for w, a in scores.items()), file=sys.stderr)
    best = max(READER_WEIGHTS, key=lambda w: (round(scores[w], 6), -w))
    return np.array([1.0, best]), 0.0


def fit_reader(read_by_set: dict, bank_by_set: dict, max_false: float, quantiles: Sequence[float]) -> dict:
    """How the reader's logit and the scorer's combine (the weight that puts a gold sentence first most often
    on dev, each set weighing the same), the confidence model over the combined ranking plus the reader's
    logit, its threshold, and how far each corpus's answers to the unrelated bank may raise that threshold."""
    cw, cb = choose_combination(read_by_set)

    def features(row: dict) -> np.ndarray:
        order = np.argsort(-(row["features"] @ cw + cb), kind="stable") if len(row["read"]) else []
        ranked = [dataclasses.replace(row["read"][i], score=float(row["features"][i] @ cw + cb)) for i in order]
        search = row["search"]
        return scoring.confidence_features(search.store, ranked, row["question"], search.terms, search.follow_up,
                                           read=True)

    def first_holds_gold(row: dict) -> bool:
        return bool(len(row["read"])) and bool(row["labels"][int(np.argmax(row["features"] @ cw + cb))])

    xs, ys, ws, kinds = [], [], [], []
    for name, rows in read_by_set.items():
        part = {True: [r for r in rows if r["q"].unanswerable], False: [r for r in rows if not r["q"].unanswerable]}
        for unanswerable, group in part.items():
            for row in group:
                xs.append(features(row))
                ys.append(0.0 if unanswerable else 1.0)
                ws.append(1.0 / len(group))
                kinds.append((name, unanswerable, first_holds_gold(row)))
    w, b = logistic(np.vstack(xs), np.asarray(ys), np.asarray(ws), signs=READER_CONFIDENCE_SIGNS)

    def probability(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(x @ w + b)))

    scored = [(p, *k) for p, k in zip(probability(np.vstack(xs)), kinds)]
    threshold = choose_threshold(scored, max_false)
    unrelated = {name: probability(np.vstack([features(row) for row in rows])) for name, rows in bank_by_set.items()}
    return {"combine": {"features": list(scoring.READER_FEATURES), "weights": [round(float(v), 4) for v in cw],
                        "bias": round(cb, 4)},
            "confidence": {"features": list(scoring.READER_CONFIDENCE_FEATURES),
                           "weights": [round(float(v), 4) for v in w], "bias": round(b, 4)},
            "abstain_below": threshold,
            "unrelated": choose_quantile(scored, unrelated, threshold, quantiles, max_false)}


UNRELATED_QUANTILES = (0.7, 0.8, 0.9, 0.95)


def choose_quantile(scored: list[tuple], unrelated: dict[str, np.ndarray], threshold: float,
                    quantiles: Sequence[float], max_false: float) -> dict:
    """Of the bank's `quantiles` (each with its cap from `choose_rise`), the rule that declines the most dev
    unanswerable questions, averaged over the sets that have them; ties go to the lower quantile."""
    def recall(rule: dict) -> float:
        rates = []
        for name, bank in unrelated.items():
            declined = [p < calibration.corpus_threshold(threshold, bank, rule)
                        for p, n, unans, _ in scored if n == name and unans]
            if declined:
                rates.append(float(np.mean(declined)))
        return float(np.mean(rates)) if rates else 0.0

    rules = [choose_rise(scored, unrelated, threshold, q, max_false) for q in sorted(quantiles)]
    recalls = [recall(rule) for rule in rules]
    print("unrelated quantile -> mean dev abstention recall: "
          + ", ".join(f"{r['quantile']} (cap {r['cap']}): {v:.3f}" for r, v in zip(rules, recalls)), file=sys.stderr)
    chosen = rules[max(range(len(rules)), key=lambda i: (round(recalls[i], 6), -i))]
    for name, bank in unrelated.items():
        print(f"{name}: bank quantile {np.quantile(bank, chosen['quantile']):.3f}, "
              f"threshold {calibration.corpus_threshold(threshold, bank, chosen):.2f}", file=sys.stderr)
    return chosen


def choose_rise(scored: list[tuple], unrelated: dict[str, np.ndarray], threshold: float, quantile: float,
                max_false: float) -> dict:
    """The cap on how far the unrelated bank's `quantile` may raise the threshold on a corpus: the highest
    threshold at which false abstention on dev stays <= max_false in every set whose threshold the bank does
    raise, so a corpus that answers the bank even more confidently (all of Wikipedia) declines no more of its
    own answerable questions than those could bear. No set raised on dev: no rise (the cap is the threshold)."""
    raised = [name for name, bank in unrelated.items() if np.quantile(bank, quantile) > threshold]
    answerable = [np.array([p for p, n, unans, _ in scored if n == name and not unans]) for name in raised]
    cap = threshold
    for t in np.arange(threshold + 0.01, 1.0, 0.01):
        if raised and all(np.mean(probs < t) <= max_false for probs in answerable if len(probs)):
            cap = float(t)
    return {"quantile": quantile, "cap": round(cap, 2)}


def bank_questions() -> list[Question]:
    return [Question(f"unrelated-{i}", text, (), unanswerable=True)
            for i, text in enumerate(calibration.unrelated_questions())]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.fit", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="seed,squad2,covid_qa,wh_readouts,squad_absent")
    parser.add_argument("--reader-only", action="store_true", help="keep the fitted scorer and confidence "
                        "models; only fit the reader's combination, confidence and threshold")
    parser.add_argument("--max-false-abstention", type=float, default=0.05)
    parser.add_argument("--unrelated-quantile", type=float, action="append", help="a share of the unrelated "
                        "bank a corpus's threshold may rise to decline (app/calibration.py); repeat to offer several, "
                        "the one that declines the most dev unanswerables is kept (default: "
                        + ", ".join(map(str, UNRELATED_QUANTILES)) + ")")
    parser.add_argument("--index-root", type=Path, help="keep each set's index in INDEX_ROOT/NAME instead")
    parser.add_argument("--dry-run", action="store_true", help="print the weights, do not write scoring.json")
    args = parser.parse_args(argv)
    embedder = default_embedder()
    qa_by_set, rows_by_set, dev_by_set = {}, {}, {}
    for name in args.datasets.split(","):
        corpus, index, questions_file = dataset_paths(name, args.index_root)
        qa = QA(Settings(corpus=corpus, index=index), embedder)
        qa.build()
        dev = [q for q in load_questions(questions_file) if q.split == "dev"]
        print(f"{name}: {len(dev)} dev questions", file=sys.stderr)
        qa_by_set[name], dev_by_set[name] = qa, dev
        if not args.reader_only:
            rows_by_set[name] = collect(qa, dev)
    if not args.reader_only:
        fit_models(qa_by_set, rows_by_set, args)
    first = next(iter(qa_by_set.values()))
    if first.reader is not None and first.passage_reader is not None:
        weight = choose_passage_weight(qa_by_set, dev_by_set)
        write_entry("passage_reader", {"name": first.passage_reader.name, "weight": weight,
                                       "note": "chosen on the dev splits of " + args.datasets}, args.dry_run)
    if first.reader is not None:
        read_by_set = {name: collect_read(qa, dev_by_set[name]) for name, qa in qa_by_set.items()}
        bank_by_set = {name: collect_read(qa, bank_questions()) for name, qa in qa_by_set.items()}
        reader_fit = fit_reader(read_by_set, bank_by_set, args.max_false_abstention,
                                args.unrelated_quantile or UNRELATED_QUANTILES)
        write_entry("reader", {"name": first.reader.name, "note": "fitted on the dev splits of " + args.datasets,
                               **reader_fit}, args.dry_run)
    return 0


def write_entry(key: str, entry: dict, dry_run: bool) -> None:
    """Print one fitted entry and, unless `dry_run`, put it into scoring.json beside the others; what is read
    next sees it."""
    print(json.dumps(entry, indent=2))
    if not dry_run:
        fitted = dict(scoring.weights(), **{key: entry})
        scoring.WEIGHTS_FILE.write_text(json.dumps(fitted, indent=2) + "\n", encoding="utf-8")
    scoring.weights.cache_clear()


def fit_models(qa_by_set: dict, rows_by_set: dict, args) -> None:
    """The sentence scorer, then the confidence model on top of its scores, and the confidence threshold."""
    sw, sb = fit_sentence(rows_by_set)
    previous = scoring.weights()
    fitted = dict(previous, sentence={"features": list(scoring.SENTENCE_FEATURES), "weights": [round(float(v), 4) for v in sw],
                                      "bias": round(sb, 4)})
    scoring.weights.cache_clear()
    if not args.dry_run:  # the confidence model is fitted on top of the new sentence scores
        scoring.WEIGHTS_FILE.write_text(json.dumps(fitted, indent=2), encoding="utf-8")
    cw, cb, scored = fit_confidence(qa_by_set, rows_by_set)
    threshold = choose_threshold(scored, args.max_false_abstention)
    fitted.update(
        note="fitted by `python -m eval.fit` on the dev splits of " + args.datasets,
        confidence={"features": list(scoring.CONFIDENCE_FEATURES), "weights": [round(float(v), 4) for v in cw],
                    "bias": round(cb, 4)},
        abstain_below=threshold,
    )
    print(json.dumps(fitted, indent=2))
    if not args.dry_run:
        scoring.WEIGHTS_FILE.write_text(json.dumps(fitted, indent=2) + "\n", encoding="utf-8")
    scoring.weights.cache_clear()


if __name__ == "__main__":
    sys.exit(main())
