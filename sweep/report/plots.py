"""The plots next to comparison.md: validation accuracy and train loss per epoch (one line per run,
coloured by cell) and test accuracy per cell with error bars; plots.json records what each one draws."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from sweep.report.budget import EXPECTED_MAX_PNG
from sweep.report.record import RunRecord

VALID_ACC_PNG, TRAIN_LOSS_PNG, TEST_ACC_PNG = "valid_acc.png", "train_loss.png", "test_acc.png"
# each plot's file -> what it shows (the curves' titles, comparison.md's captions)
CAPTIONS = {
    VALID_ACC_PNG: "validation accuracy per epoch",
    TRAIN_LOSS_PNG: "train loss per epoch",
    TEST_ACC_PNG: "test accuracy per cell",
}
STD_BARS, CI_BARS = "std over seeds", "95% bootstrap CI over test examples"


def plot_curves(plt, runs: Sequence[RunRecord], colors: Dict[str, Any], column: str, title: str, path: Path) -> Dict:
    """One line per run, coloured by cell; the legend names each cell once."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    lines, named = [], set()
    for run in runs:
        x, y = run.history.get("epoch"), run.history.get(column)
        if not x or not y:
            continue
        ax.plot(
            x,
            y,
            marker="o",
            alpha=0.8,
            color=colors[run.label],
            label="_nolegend_" if run.label in named else run.label,
        )
        named.add(run.label)
        lines.append(
            {"label": run.label, "seed": run.seed, "status": run.status, "run_dir": str(run.path), "x": x, "y": y}
        )
    ax.set(xlabel="epoch", ylabel=column, title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if named:  # outside the axes: never hides a line, and no slow loc="best" search over hundreds of them
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + len(named) // 25)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return {"kind": "line", "x": "epoch", "y": column, "lines": lines}


def error_interval(row: Dict[str, Any], kind: str) -> Tuple[float, float]:
    """(below, above) the mean for one cell; none where the cell has no interval of the chart's kind."""
    if kind == STD_BARS:
        err = (row["test/acc_std"],) * 2 if row["n"] > 1 else (0.0, 0.0)
    else:
        low, high, acc = row["test/acc_ci_low"], row["test/acc_ci_high"], row["test/acc"]
        err = (0.0, 0.0) if pd.isna(low) else (acc - low, high - acc)
    return tuple(0.0 if pd.isna(e) else max(float(e), 0.0) for e in err)


def zoomed_limits(bars: List[Dict[str, Any]]) -> Optional[Tuple[float, float]]:
    """An axis that spans the values and their error bars with a margin, inside [0, 1]: accuracies
    between 0.83 and 0.93 on a 0-to-1 axis hide the differences the chart is for."""
    ends = [(b["value"] - b["err_low"], b["value"] + b["err_high"]) for b in bars if not pd.isna(b["value"])]
    if not ends:
        return None
    low, high = min(e[0] for e in ends), max(e[1] for e in ends)
    margin = max(0.1 * (high - low), 0.005)
    return max(0.0, low - margin), min(1.0, high + margin)


def plot_bars(plt, summary: pd.DataFrame, labels: List[str], path: Path) -> Dict:
    """Test accuracy per cell as points with error bars of one kind: std over seeds when any cell has
    several seeds (one-seed cells then get none), else the bootstrap CI of each one-seed cell."""
    kind = STD_BARS if (summary["n"] > 1).any() else CI_BARS
    bars = []
    for label, row in zip(labels, summary.to_dict("records")):
        err_low, err_high = error_interval(row, kind)
        bars.append({"label": label, "value": row["test/acc"], "err_low": err_low, "err_high": err_high, "n": row["n"]})
    title = f"{CAPTIONS[TEST_ACC_PNG]} (error bars: {kind})"
    if kind == STD_BARS and (summary["n"] == 1).any():
        title += "; one-seed cells have none"
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.4 * max(len(bars), 1)))
    # points, not bars: the axis does not start at 0; cell names of any length stay readable, in table order
    ax.errorbar(
        [b["value"] for b in bars],
        range(len(bars)),
        fmt="o",
        color="tab:blue",
        capsize=3,
        xerr=[[b["err_low"] for b in bars], [b["err_high"] for b in bars]],
    )
    ax.set_yticks(range(len(bars)), [b["label"] for b in bars], fontsize="small")
    ax.set_ylim(len(bars) - 0.5, -0.5)
    limits = zoomed_limits(bars)
    if limits:
        ax.set_xlim(*limits)
    ax.grid(axis="x", alpha=0.3)
    ax.set(xlabel="test/acc", title=title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return {"kind": "points", "y": "test/acc", "error_bars": kind, "title": title, "xlim": limits, "bars": bars}


def plot_expected_max(plt, table: pd.DataFrame, path: Path) -> Dict:
    """One curve per cell: the expected best validation score of n trials, with a band of ± one std."""
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = []
    for label, group in table.groupby("cell", sort=False):
        n, mean, std = group["n"], group["expected_max_valid"], group["std"]
        (line,) = ax.plot(n, mean, marker="o", label=label)
        ax.fill_between(n, mean - std, mean + std, alpha=0.2, color=line.get_color())
        curves.append({"label": label, "n": n.tolist(), "y": mean.tolist()})
    ax.xaxis.get_major_locator().set_params(integer=True)  # budgets are whole trials
    ax.set_xlabel("trials (tuning budget)")
    ax.set_ylabel("expected best validation score")
    ax.set_title("expected best validation score by budget")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"kind": "lines", "x": "n", "y": "expected_max_valid", "band": "std", "curves": curves}


def make_plots(
    runs: Sequence[RunRecord],
    summary: pd.DataFrame,
    labels: List[str],
    out: Path,
    budget: Optional[pd.DataFrame] = None,
) -> Dict:
    """Draws the three plots into out (four with the tuned view's expected best by budget); returns
    plots.json's record of them, by file name."""
    import matplotlib  # here, not at the top: importing the report (its tables, its tests) needs no matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cycle = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels + [r.label for r in runs]))}
    plots = {
        VALID_ACC_PNG: plot_curves(plt, runs, colors, "valid/acc", CAPTIONS[VALID_ACC_PNG], out / VALID_ACC_PNG),
        TRAIN_LOSS_PNG: plot_curves(plt, runs, colors, "train/loss", CAPTIONS[TRAIN_LOSS_PNG], out / TRAIN_LOSS_PNG),
        TEST_ACC_PNG: plot_bars(plt, summary, labels, out / TEST_ACC_PNG),
    }
    if budget is not None and len(budget):
        plots[EXPECTED_MAX_PNG] = plot_expected_max(plt, budget, out / EXPECTED_MAX_PNG)
    return plots
