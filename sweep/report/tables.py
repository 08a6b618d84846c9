"""The tables: comparison.csv (one row per run), summary.csv (one row per cell, seeds folded into
mean and std), significance.csv (paired tests between cells, sweep/report/stats.py), the tuned view of
--over/--select (each cell at its best value of one swept key, by validation), and --sort."""

import itertools
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from sweep.config.metrics import DEFAULT_METRIC, SELECT_METRICS, lower_is_better
from sweep.errors import CollectError
from sweep.report.cells import column_name
from sweep.report.record import RunRecord
from sweep.report.stats import ALPHA, bootstrap_ci, compare, holm, paired_correct

# the table's metrics in column order, with their headers in comparison.md (markdown.COLUMN_NOTES says what they hold)
METRICS = {
    "train/acc": "train acc (running, best epoch)",
    "valid/acc": "valid acc",
    "test/acc": "test acc",
    "test/f1": "test F1",
    "test/macro_f1": "test macro-F1",
    "test/micro_f1": "test micro-F1",  # multi_label
    "test/subset_acc": "test subset acc",  # multi_label: every label right
    "test/pearson": "test Pearson r",  # regression
    "test/spearman": "test Spearman r",
    "test/mse": "test MSE",
    "best_epoch": "best epoch",
    "data/test_cut_frac": "test texts cut",
    "train_seconds": "train loop (s)",
    "train_samples_per_s": "train loop samples/s",
    "test_samples_per_s": "inference samples/s (test)",
    "peak_memory_mib": "inference peak memory (MiB)",
    "onnx_int8_samples_per_s": "onnx int8 samples/s",
    "params": "params (incl. unused)",
    "trainable_params": "trainable params",
}
# the table's figures of multi_label and regression runs: left out of comparison.md where no run has them
TASK_ONLY = ("test/micro_f1", "test/subset_acc", "test/pearson", "test/spearman", "test/mse")
# and single-label figures left out of those runs' tables, where every cell lacks them
SINGLE_LABEL_ONLY = ("train/acc", "valid/acc", "test/acc", "test/f1", "test/macro_f1")
# summary.csv's metrics: the table's, and the validation metrics a run may be selected by (trainer.select_metric)
SUMMARY_METRICS = {**METRICS, **{m: m.replace("/", " ").replace("_", " ") for m in SELECT_METRICS if m not in METRICS}}
# metrics.json fields comparison.csv leaves out: its own columns already say them
NOT_METRIC_COLUMNS = ("model", "pooling", "method", "seed", "status", "error")

Cells = Dict[tuple, List[RunRecord]]


def runs_table(runs: Sequence[RunRecord], keys: Sequence[str]) -> pd.DataFrame:
    """comparison.csv: one row per run (jobs that never started included), every metric and cell key."""
    rows = []
    for run in runs:
        row = {"run_dir": str(run.path or ""), "status": run.status, "cell": run.label}
        row.update({column_name(k): v for k, v in zip(keys, run.cell)})
        row.update({"seed": run.seed, "overrides": " ".join(run.overrides)})
        row.update({k: v for k, v in run.metrics.items() if k not in NOT_METRIC_COLUMNS})
        rows.append({**row, "error": run.error})
    return pd.DataFrame(rows)


def summarize(cells: Cells, keys: Sequence[str]) -> pd.DataFrame:
    """summary.csv: one row per cell; mean and sample std (ddof=1) over seeds, a bootstrap CI with one."""
    rows = []
    for cell, group in cells.items():
        row = {column_name(k): v for k, v in zip(keys, cell)}
        row.update({"n": len(group), "seeds": " ".join(str(r.seed) for r in group)})
        for metric in SUMMARY_METRICS:
            values = pd.to_numeric(pd.Series([r.metrics.get(metric) for r in group], dtype=object), errors="coerce")
            row[metric], row[f"{metric}_std"] = values.mean(), values.std(ddof=1)
        predictions = group[0].predictions if len(group) == 1 else None
        single_label = group[0].metrics.get("task", "single_label") == "single_label"  # its scores are test/acc's
        correct = predictions[1] if predictions and single_label else None
        row["test/acc_ci_low"], row["test/acc_ci_high"] = bootstrap_ci(correct) if correct is not None else (None, None)
        rows.append(row)
    columns = (
        [column_name(k) for k in keys] + ["n", "seeds"] + [f"{m}{s}" for m in SUMMARY_METRICS for s in ("", "_std")]
    )
    return pd.DataFrame(rows, columns=columns + ["test/acc_ci_low", "test/acc_ci_high"])


def significance(cells: Cells) -> pd.DataFrame:
    """One row per pair of cells that share a test set: the test that fits their seeds (sweep.report.stats),
    its raw p-value, the Holm-adjusted one over all pairs, and the verdict from the adjusted one."""
    rows = []
    for runs_a, runs_b in itertools.combinations(cells.values(), 2):
        result = compare(paired_correct(runs_a, runs_b))
        if result is not None:
            rows.append({"A": runs_a[0].label, "B": runs_b[0].label, **result})
    columns = ["A", "B", "test", "seed_pairs", "examples", "acc_diff", "mse_diff", "b", "c", "p_value"]
    sig = pd.DataFrame(rows, columns=columns)
    sig["p_holm"] = holm(sig["p_value"])
    sig["significant"] = sig["p_holm"] < ALPHA
    return sig


@dataclass
class Selection:
    """The tuned view: for each cell of the other keys, the values of the `over` keys with the best `metric`."""

    metric: str  # a validation metric of summary.csv (valid/acc)
    over: List[str]  # cell columns (optim.lr; or every key a tune sweep searched)
    candidates: List[Any]  # the settings of `over` that ran (a value, or a tuple of values with several keys)
    tuned_sweep: bool = False  # from a hydra/sweeper=tune sweep: `over` is its search space

    def header(self, column: str) -> str:
        return f"{column} (selected by {SUMMARY_METRICS[self.metric]})"

    def note(self) -> str:
        keys = " and ".join(self.over)
        if self.tuned_sweep or len(self.candidates) > 6:
            among = f"of its {len(self.candidates)} trials" if self.tuned_sweep else "of the values that ran"
        else:
            among = "of " + ", ".join(map(str, self.candidates))
        return (
            f"Tuned view: for each cell, the {keys} with the best mean {SUMMARY_METRICS[self.metric]} over its "
            f"seeds ({among}), chosen on validation only, with that setting's test figures; "
            "every run is in comparison.csv and every setting in summary.csv."
        )


def selection(summary: pd.DataFrame, key_columns: List[str], metric: str, over: str, tuned_sweep: bool) -> Selection:
    """--select METRIC --over KEY[,KEY...] checked against what ran: a user-facing error for anything else."""
    if not metric.startswith("valid/"):
        raise CollectError(
            f"--select {metric}: select by a validation metric (valid/acc), never by a test figure", code=2
        )
    if metric not in SUMMARY_METRICS:
        raise CollectError(
            f"--select {metric}: no such metric; validation metrics: "
            + ", ".join(m for m in SUMMARY_METRICS if m.startswith("valid/")),
            code=2,
        )
    columns = [column_name(key.strip()) for key in over.split(",") if key.strip()]
    swept = [c for c in key_columns if summary[c].nunique(dropna=False) > 1]
    for column in columns:
        if column not in swept:
            raise CollectError(
                f"--over {column}: not swept in these runs (swept keys: {', '.join(swept) or 'none'})", code=2
            )
    settings = summary[columns].apply(tuple, axis=1) if len(columns) > 1 else summary[columns[0]]
    return Selection(metric, columns, list(dict.fromkeys(settings)), tuned_sweep)


def select_best(summary: pd.DataFrame, key_columns: List[str], chosen: Selection) -> List[int]:
    """Row numbers of summary to keep: per cell of the other keys, the row with the best mean metric
    (ties: the first in table order); cells whose metric is missing everywhere keep their first row."""
    others = [c for c in key_columns if c not in chosen.over]
    score = summary[chosen.metric].astype(float)
    if lower_is_better(chosen.metric):
        score = -score
    score = score.fillna(-math.inf)
    groups = summary.groupby([summary[c].map(repr) for c in others], sort=False) if others else [(None, summary)]
    return sorted(score.loc[group.index].idxmax() for _, group in groups)


def runs_select_metric(cells: Cells) -> str:
    """The trainer.select_metric the runs chose their checkpoints by, where they agree (else valid/acc)."""
    chosen = {run.metrics.get("select_metric", DEFAULT_METRIC) for runs in cells.values() for run in runs}
    return chosen.pop() if len(chosen) == 1 else DEFAULT_METRIC


def tuned(
    cells: Cells,
    summary: pd.DataFrame,
    labels: List[str],
    key_columns: List[str],
    over: Optional[str],
    select: Optional[str],
    tuned_sweep: bool = False,
) -> Tuple[Cells, pd.DataFrame, List[str], Optional[Selection]]:
    """The cells the table shows: all of them, or with --over (or on a tune sweep) only each one's selected setting."""
    if not over:
        if select:
            raise CollectError(f"--select {select} needs --over KEY: the swept key whose value it chooses", code=2)
        return cells, summary, labels, None
    chosen = selection(summary, key_columns, select or runs_select_metric(cells), over, tuned_sweep)
    rows = select_best(summary, key_columns, chosen)
    cell_items = list(cells.items())
    return (
        dict(cell_items[i] for i in rows),
        summary.loc[rows].reset_index(drop=True),
        [labels[i] for i in rows],
        chosen,
    )


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def sort_cells(summary: pd.DataFrame, labels: List[str], spec: str) -> Tuple[pd.DataFrame, List[str]]:
    """--sort COLUMN (ascending) or --sort=-COLUMN (descending), stable, missing values last."""
    column, descending = spec.lstrip("-"), spec.startswith("-")
    if column not in summary.columns:
        raise CollectError(f"unknown --sort column {column!r}; valid columns: {', '.join(summary.columns)}", code=2)
    values = summary[column]
    # a key some configs lack mixes "(not recorded)" into numbers: those sort last, like missing values
    numeric = pd.to_numeric(values, errors="coerce") if values.map(is_number).any() else values.astype(str)
    order = numeric.sort_values(ascending=not descending, kind="stable", na_position="last").index
    return summary.loc[order].reset_index(drop=True), [labels[i] for i in order]
