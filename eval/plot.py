"""PNG plots for report.md: the abstention trade-off by threshold, and hit@k by k (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

SERIES = [("answered_correctly", "answered correctly (hit@1)"), ("wrongly_declined", "answerable declined"),
          ("unanswerable_declined", "unanswerable declined")]
STYLES = {"dev": "-", "test": "--"}


def abstention_plot(calibration: dict, path: Path) -> None:
    """Rates against the threshold, per split, with the current and the dev-chosen thresholds marked."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for split, rows in calibration["rows"].items():
        xs = [r["threshold"] for r in rows]
        for (key, label), colour in zip(SERIES, ("tab:green", "tab:red", "tab:blue")):
            ys = [r[key] for r in rows]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, STYLES.get(split, ":"), color=colour, label=f"{label}, {split}")
    ax.axvline(calibration["current"], color="grey", linestyle=":", label=f"current {calibration['current']:.2f}")
    if calibration["chosen"] is not None:
        ax.axvline(calibration["chosen"], color="black", label=f"chosen on dev {calibration['chosen']:.2f}")
    ax.set(xlabel="abstain below confidence", ylabel="fraction of questions", ylim=(-0.02, 1.02),
           title="Abstention trade-off")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def hit_at_k_plot(series: dict[str, list[float]], path: Path) -> None:
    """One line per named series (a split, or a configuration compared on all questions)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in series.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, marker="o", label=name)
    ax.set(xlabel="k (gold in one of the first k quotes)", ylabel="hit@k", ylim=(0, 1.02), title="hit@k by k")
    ax.set_xticks(range(1, max((len(v) for v in series.values()), default=1) + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
