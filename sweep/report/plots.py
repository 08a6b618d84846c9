"""The plots next to comparison.md, each in the terms of the runs' task (data.task): the task's
headline validation metric and the train loss per epoch (one line per run, coloured by cell), the
task's headline test figure per cell with error bars, and the cost of each cell against that figure
(sweep/report/cost.py). A collection of several tasks gets each plot per task, never one axis for
two tasks. plots.json records what each one draws, with its caption."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from sweep.config.metrics import headline
from sweep.report.budget import EXPECTED_MAX_PNG
from sweep.report.record import RunRecord

STD_BARS, CI_BARS = "std over seeds", "95% bootstrap CI over test examples"
# the axis a task's headline can take: accuracies and F1 in [0, 1], a correlation in [-1, 1]
BOUNDS = {"single_label": (0.0, 1.0), "multi_label": (0.0, 1.0), "regression": (-1.0, 1.0)}


def task_of(run: RunRecord) -> str:
    return run.metrics.get("task", "single_label")


def plot_names(task: str, several_tasks: bool) -> Dict[str, str]:
    """The task's plot files: valid_acc.png, train_loss.png, test_acc.png for single_label (as ever);
    valid_micro_f1.png, test_pearson.png... for the others, the loss's named by task where tasks mix."""
    metric = headline(task, "test").split("/")[1]
    return {
        "valid": f"valid_{metric}.png",
        "loss": f"train_loss_{task}.png" if several_tasks else "train_loss.png",
        "test": f"test_{metric}.png",
    }


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
    return {"kind": "line", "x": "epoch", "y": column, "caption": title, "lines": lines}


def error_interval(row: Dict[str, Any], metric: str, kind: str) -> Tuple[float, float]:
    """(below, above) the mean for one cell; none where the cell has no interval of the chart's kind
    (the bootstrap CI is test accuracy's alone)."""
    if kind == STD_BARS:
        err = (row[f"{metric}_std"],) * 2 if row["n"] > 1 else (0.0, 0.0)
    elif metric == "test/acc":
        low, high, acc = row["test/acc_ci_low"], row["test/acc_ci_high"], row["test/acc"]
        err = (0.0, 0.0) if pd.isna(low) else (acc - low, high - acc)
    else:
        err = (0.0, 0.0)
    return tuple(0.0 if pd.isna(e) else max(float(e), 0.0) for e in err)


def zoomed_limits(
    bars: List[Dict[str, Any]], bounds: Tuple[float, float] = (0.0, 1.0)
) -> Optional[Tuple[float, float]]:
    """An axis that spans the values and their error bars with a margin, inside the metric's bounds:
    accuracies between 0.83 and 0.93 on a 0-to-1 axis hide the differences the chart is for."""
    ends = [(b["value"] - b["err_low"], b["value"] + b["err_high"]) for b in bars if not pd.isna(b["value"])]
    if not ends:
        return None
    low, high = min(e[0] for e in ends), max(e[1] for e in ends)
    margin = max(0.1 * (high - low), 0.005)
    return max(bounds[0], low - margin), min(bounds[1], high + margin)


def plot_bars(plt, summary: pd.DataFrame, labels: List[str], path: Path, task: str = "single_label") -> Dict:
    """The task's headline test figure per cell as points with error bars of one kind: std over seeds
    when any cell has several seeds (one-seed cells then get none), else the bootstrap CI of each
    one-seed cell (test accuracy only)."""
    metric = headline(task, "test")
    kind = STD_BARS if (summary["n"] > 1).any() else CI_BARS
    bars = []
    for label, row in zip(labels, summary.to_dict("records")):
        err_low, err_high = error_interval(row, metric, kind)
        bars.append({"label": label, "value": row[metric], "err_low": err_low, "err_high": err_high, "n": row["n"]})
    title = f"{metric} per cell (error bars: {kind})"
    if kind == STD_BARS and (summary["n"] == 1).any():
        title += "; one-seed cells have none"
    elif kind == CI_BARS and metric != "test/acc":
        title = f"{metric} per cell (one seed each: no error bars)"
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
    limits = zoomed_limits(bars, BOUNDS[task])
    if limits:
        ax.set_xlim(*limits)
    ax.grid(axis="x", alpha=0.3)
    ax.set(xlabel=metric, title=title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return {
        "kind": "points",
        "y": metric,
        "error_bars": kind,
        "title": title,
        "caption": title,
        "xlim": limits,
        "bars": bars,
    }


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
    caption = "expected best validation score by tuning budget"
    return {"kind": "lines", "x": "n", "y": "expected_max_valid", "band": "std", "caption": caption, "curves": curves}


def make_plots(
    runs: Sequence[RunRecord],
    summary: pd.DataFrame,
    labels: List[str],
    out: Path,
    budget: Optional[pd.DataFrame] = None,
) -> Dict:
    """Draws each task's plots into out (sweep/report/cost.py's too; with the tuned view's expected
    best by budget); returns plots.json's record of them, by file name, each with its task."""
    import matplotlib  # here, not at the top: importing the report (its tables, its tests) needs no matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    from sweep.report.cost import plot_cost

    cycle = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels + [r.label for r in runs]))}
    tasks = cell_tasks(runs, labels)
    plots = {}
    for task in dict.fromkeys(tasks):
        rows = [i for i, t in enumerate(tasks) if t == task]
        task_runs, task_summary = [r for r in runs if task_of(r) == task], summary.iloc[rows].reset_index(drop=True)
        task_labels, names = [labels[i] for i in rows], plot_names(task, len(set(tasks)) > 1)
        valid = headline(task, "valid")
        drawn = {
            names["valid"]: plot_curves(plt, task_runs, colors, valid, f"{valid} per epoch", out / names["valid"]),
            names["loss"]: plot_curves(
                plt, task_runs, colors, "train/loss", "train loss per epoch", out / names["loss"]
            ),
            names["test"]: plot_bars(plt, task_summary, task_labels, out / names["test"], task),
        }
        drawn.update(plot_cost(plt, task_summary, task_labels, task, out, len(set(tasks)) > 1))
        plots.update({name: {**plot, "task": task} for name, plot in drawn.items()})
    if budget is not None and len(budget):
        plots[EXPECTED_MAX_PNG] = plot_expected_max(plt, budget, out / EXPECTED_MAX_PNG)
    return plots


def cell_tasks(runs: Sequence[RunRecord], labels: List[str]) -> List[str]:
    """The task of each cell (labels: the summary's rows), read from its runs."""
    by_label = {run.label: task_of(run) for run in runs if run.metrics}
    return [by_label.get(label, "single_label") for label in labels]
