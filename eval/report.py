"""The evaluation report: one JSON-able dict (report.json), rendered as console tables and as report.md.

Everything shown is computed once into the dict, so the console, the Markdown and the JSON never disagree.
"""

from __future__ import annotations

from typing import Sequence

from .metrics import (
    MAX_FALSE_ABSTENTION, MAX_K, Result, choose_threshold, failures, objective, score, sweep, thresholds,
)
from .questions import SPLITS

CONSOLE_FAILURES = 20  # more than this and the console points to report.md instead


def groups(results: Sequence[Result]) -> dict[str, list[Result]]:
    """The results of each split present, then all of them."""
    out = {split: [r for r in results if r.question.split == split] for split in SPLITS}
    out = {name: rows for name, rows in out.items() if rows}
    out["all"] = list(results)
    return out


def by_kind(results: Sequence[Result]) -> dict[str, dict]:
    """Headline figures per question kind ("direct", "paraphrase", "followup", ...), where lines have one."""
    kinds = sorted({r.question.kind for r in results if r.question.kind})
    out = {}
    for kind in kinds:
        m = score([r for r in results if r.question.kind == kind])
        out[kind] = {"questions": m.questions, "hit1": m.hit1, "abstention_recall": m.abstention_recall,
                     "false_abstention": m.false_abstention}
    return out


def calibration(results: Sequence[Result], current: float, max_false_abstention: float = MAX_FALSE_ABSTENTION) -> dict:
    """The abstention trade-off over a threshold grid, the threshold chosen on dev by `objective`, and the
    figures on every split at the chosen and at the current threshold."""
    by_split = {name: rows for name, rows in groups(results).items() if name != "all"}
    grid = thresholds(results, include=[current])
    rows = {name: [row.to_json() for row in sweep(split_results, grid)] for name, split_results in by_split.items()}
    chosen = choose_threshold(sweep(by_split["dev"], grid), max_false_abstention) if "dev" in by_split else None
    if "dev" not in by_split:
        note = "no dev split among these questions: nothing to choose on"
    elif chosen is None:
        note = "no unanswerable question on dev: the threshold cannot be chosen here"
    else:
        note = None

    def figures(threshold: float) -> dict:
        return {name: _headline(score(split_results, threshold)) for name, split_results in by_split.items()}

    return {
        "objective": objective(max_false_abstention), "current": current, "chosen": chosen, "note": note, "rows": rows,
        "at_current": figures(current), "at_chosen": figures(chosen) if chosen is not None else None,
    }


def _headline(m) -> dict:
    return {"hit1": m.hit1, "abstention_recall": m.abstention_recall, "false_abstention": m.false_abstention}


def compare_rows(runs: dict[str, Sequence[Result]]) -> list[dict]:
    """One row per configuration and split, each at its run's threshold and with abstention disabled."""
    rows = []
    for name, results in runs.items():
        for split, split_results in groups(results).items():
            m = score(split_results)
            rows.append({
                "configuration": name, "split": split, "hit1": m.hit1,
                "hit1_never_abstaining": score(split_results, float("-inf")).hit1,
                "quote_chars_median": m.quote_chars_median, "abstention_recall": m.abstention_recall,
                "false_abstention": m.false_abstention, "hit_at_k": list(m.hit_at_k),
            })
    return rows


def build_report(results: Sequence[Result], meta: dict, current_threshold: float,
                 compared: dict[str, Sequence[Result]] | None = None,
                 max_false_abstention: float = MAX_FALSE_ABSTENTION) -> dict:
    return {
        **meta,
        "groups": {name: score(rows).to_json() for name, rows in groups(results).items()},
        "by_kind": by_kind(results),
        "calibration": calibration(results, current_threshold, max_false_abstention),
        "compare": compare_rows(compared) if compared else None,
        "failures": failures(results),
    }


# --- rendering -------------------------------------------------------------------------------------------

def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def num(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.0f}{unit}"


METRIC_ROWS = [
    ("questions", "questions", lambda m: str(m["questions"])),
    ("answerable / unanswerable", "answerable / unanswerable", lambda m: f"{m['answerable']} / {m['unanswerable']}"),
    ("hit@1", "hit@1", lambda m: pct(m["hit1"])),
    ("hit@3", "hit@3", lambda m: pct(m["hit3"])),
    ("MRR", "MRR", lambda m: "n/a" if m["mrr"] is None else f"{m['mrr']:.3f}"),
    ("first quote, median chars", "first quote, median chars", lambda m: num(m["quote_chars_median"])),
    ("first quote, p90 chars", "first quote, p90 chars", lambda m: num(m["quote_chars_p90"])),
    ("abstention recall", "abstention recall (unanswerable declined)", lambda m: pct(m["abstention_recall"])),
    ("false abstention", "false abstention (answerable declined)", lambda m: pct(m["false_abstention"])),
    ("follow-up hit@1", "follow-up hit@1 (conversations)", lambda m: pct(m["followup_hit1"])),
    ("exact answer EM", "exact answer, exact match", lambda m: pct(m["span_exact"])),
    ("exact answer F1", "exact answer, token F1", lambda m: "n/a" if m["span_f1"] is None else f"{m['span_f1']:.3f}"),
    ("verbatim", "verbatim citations", lambda m: f"{pct(m['verbatim'])} of {m['citations']}"),
    ("latency p50", "latency p50", lambda m: "n/a" if m["latency_p50_ms"] is None else f"{m['latency_p50_ms']:.0f} ms"),
    ("latency p95", "latency p95", lambda m: "n/a" if m["latency_p95_ms"] is None else f"{m['latency_p95_ms']:.0f} ms"),
]


def table(header: list[str], rows: list[list[str]], markdown: bool = False) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def metrics_table(report: dict, markdown: bool = False) -> str:
    names = list(report["groups"])
    rows = [[label_md if markdown else label] + [render(report["groups"][n]) for n in names]
            for label, label_md, render in METRIC_ROWS]
    return table(["metric", *names], rows, markdown)


def kind_table(report: dict, markdown: bool = False) -> str:
    rows = [[kind, str(k["questions"]), pct(k["hit1"]), pct(k["abstention_recall"]), pct(k["false_abstention"])]
            for kind, k in report["by_kind"].items()]
    return table(["kind", "questions", "hit@1", "abstention recall", "false abstention"], rows, markdown)


def calibration_summary(report: dict) -> str:
    cal = report["calibration"]
    lines = [f"Abstention threshold: current abstain_below = {cal['current']:.2f}; objective: {cal['objective']}."]
    if cal["chosen"] is None:
        lines.append(f"Chosen on dev: none ({cal['note']}).")
    else:
        lines.append(f"Chosen on dev: {cal['chosen']:.2f}.")
    for name, at in (("current", cal["at_current"]), ("chosen", cal["at_chosen"])):
        for split, h in (at or {}).items():
            threshold = cal[name]
            lines.append(f"  at {name} {threshold:.2f}, {split}: hit@1 {pct(h['hit1'])}, abstention recall "
                         f"{pct(h['abstention_recall'])}, false abstention {pct(h['false_abstention'])}")
    return "\n".join(lines)


def sweep_table(report: dict, markdown: bool = False, every: int = 2) -> str:
    """The trade-off per threshold and split; the console shows thresholds at multiples of `every`
    hundredths, plus the current and chosen ones."""
    cal = report["calibration"]
    splits = list(cal["rows"])
    if not splits:
        return "(no dev/test split: no sweep)"
    marked = {cal["current"]: "current"}
    if cal["chosen"] is not None:
        marked[cal["chosen"]] = "chosen" if cal["chosen"] != cal["current"] else "current = chosen"
    header = ["threshold"] + [f"{s}: {col}" for s in splits for col in
                              ("answered correctly", "wrongly declined", "unanswerable declined")]
    rows = []
    for i, row in enumerate(cal["rows"][splits[0]]):  # every split's rows share the grid
        t = row["threshold"]
        mark = next((label for value, label in marked.items() if abs(value - t) < 1e-9), "")
        if not markdown and round(t * 100) % every and not mark:
            continue
        cells = [f"{t:.2f}" + (f" <{mark}>" if mark else "")]
        for s in splits:
            r = cal["rows"][s][i]
            cells += [pct(r["answered_correctly"]), pct(r["wrongly_declined"]), pct(r["unanswerable_declined"])]
        rows.append(cells)
    return table(header, rows, markdown)


def compare_table(report: dict, markdown: bool = False) -> str:
    rows = [[r["configuration"], r["split"], pct(r["hit1"]), pct(r["hit1_never_abstaining"]),
             num(r["quote_chars_median"]), pct(r["abstention_recall"]), pct(r["false_abstention"])]
            for r in sorted(report["compare"], key=lambda r: ["dev", "test", "all"].index(r["split"]))]
    return table(["configuration", "split", "hit@1", "hit@1 never abstaining", "median quote chars",
                  "abstention recall", "false abstention"], rows, markdown)


def compare_note(report: dict) -> str:
    return (f"Every configuration abstains with the same rule, abstain_below = {report['calibration']['current']:.2f} "
            "(not tuned per configuration; the whole-passage baseline's confidence is its fused passage score); "
            "'hit@1 never abstaining' disables abstention for all of them.")


def failure_lines(items: list[dict], quote_chars: int | None = 400) -> list[str]:
    """One entry per failure: what was asked, the gold, and what was quoted (cut to `quote_chars`)."""
    lines = []
    for f in items:
        asked = " / ".join([*f["history"], f["question"]])
        gold = " | ".join(f["gold"]) or "(unanswerable)"
        quote = " ".join((f["quote"] or "(no quote)").split())
        lines.append(f"- {f['id']} [{f['split'] or '-'}{', ' + f['kind'] if f['kind'] else ''}] {asked}\n"
                     f"    gold: {gold}\n    {f['outcome']} (confidence {f['confidence']:.3f}): {quote[:quote_chars]}")
    return lines


def title(report: dict) -> str:
    return (f"Verbatim eval: {report['dataset']} ({report['questions_file']}, split {report['split']}, "
            f"{report['groups']['all']['questions']} questions; corpus {report['corpus']}, index {report['index']})")


def console(report: dict, show_sweep: bool = False, show_failures: bool = False) -> str:
    parts = [title(report), "", metrics_table(report)]
    if report["by_kind"]:
        parts += ["", kind_table(report)]
    parts += ["", calibration_summary(report)]
    if show_sweep:
        parts += ["", sweep_table(report)]
    if report["compare"]:
        parts += ["", compare_note(report), compare_table(report)]
    items = report["failures"]
    shown = items if show_failures else items[:CONSOLE_FAILURES]
    parts += ["", f"Failures: {len(items)}"] + failure_lines(shown)
    if len(shown) < len(items):
        parts.append(f"... {len(items) - len(shown)} more (--failures prints all; --report DIR writes them all)")
    return "\n".join(parts)


def markdown(report: dict) -> str:
    parts = [f"# {title(report)}", "", "## Metrics", "", metrics_table(report, True)]
    if report["by_kind"]:
        parts += ["", "## By question kind (all splits)", "", kind_table(report, True)]
    parts += ["", "## Abstention threshold", "", calibration_summary(report).replace("\n  ", "\n- "), "",
              "![abstention trade-off](abstention.png)", "", sweep_table(report, True)]
    if report["compare"]:
        parts += ["", "## Compared with simpler configurations", "", compare_note(report), "",
                  compare_table(report, True)]
    parts += ["", f"## hit@k by k (k = 1..{MAX_K})", "", "![hit@k](hit_at_k.png)", "",
              f"## Failures ({len(report['failures'])})", ""] + failure_lines(report["failures"], None)
    return "\n".join(parts) + "\n"
