"""Finished runs -> the comparison table: one row per cell (model x pooling x any other config key
that varies across the runs), seeds folded into mean ± std, paired significance tests on the saved
test predictions, curves and a bar chart, and every run that did not complete listed by status.

    python sweep/collect.py                          # the most recent sweep under outputs/
    python sweep/collect.py SWEEP_OR_RUN_DIR ...     # given sweep dirs and/or run dirs, combined
    python sweep/collect.py --all --sort=-test/acc --format json
    python sweep/collect.py --select valid/acc --over optim.lr   # each cell at its best lr (by validation)

It reads only the run-directory contract (DESIGN.md), plus a sweep's multirun.yaml to name the jobs
that never started, and never imports torch, transformers or the train app: it stays fast.
Cells come from the composed configs (.hydra/config.yaml), never from directory names: the keys
whose values differ across runs, minus those that cannot change a result (sweep/neutral.py),
minus `seed` (seeds are replicates of one cell), minus a group's sub-keys that just follow its
`name` (model.id follows model.name), minus data.split_seed while it follows seed. Values are
compared as resolved (${seed}, and `auto` as metrics.json recorded it); a key a config lacks is
"(not recorded)" there. Each (cell, seed) counts once: the run that finished last.
"""

import argparse
import csv
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import yaml

from sweep.neutral import is_result_neutral
from sweep.stats import ALPHA, MCNEMAR, TEST_MEANINGS, bootstrap_ci, compare, holm, paired_correct

COMPLETED = "completed"
# the table's metrics in column order, with their headers in comparison.md (COLUMN_NOTES says what they hold)
METRICS = {
    "train/acc": "train acc (running, best epoch)",
    "valid/acc": "valid acc",
    "test/acc": "test acc",
    "test/f1": "test F1",
    "test/macro_f1": "test macro-F1",
    "best_epoch": "best epoch",
    "train_seconds": "train loop (s)",
    "train_samples_per_s": "train loop samples/s",
    "test_samples_per_s": "inference samples/s (test)",
    "peak_memory_mib": "inference peak memory (MiB)",
    "params": "params (incl. unused)",
}
# shown precision (else 4); CSV and JSON keep every digit
DECIMALS = {"train_seconds": 1, "train_samples_per_s": 0, "test_samples_per_s": 0, "peak_memory_mib": 0}
# what the runner records under those names (sweep/runner.py finish(), Classifier.num_parameters)
COLUMN_NOTES = (
    "train acc (running, best epoch): the accuracy over the best epoch's training batches while they were "
    "trained, with dropout on and the weights changing; not the best checkpoint evaluated on the train split.",
    "train loop: the training epochs only (batches, forward, backward, optimizer steps), summed over the "
    "epochs run; not evaluation, tokenization or compilation.",
    "inference samples/s (test): the test pass on the best checkpoint at data.eval_batch_size, the first "
    "(warm-up) batch excluded, batch loading, forward and metrics included, in the run's precision and "
    "compile mode; the device is synchronized around the timed span.",
    "inference peak memory (MiB): on a GPU the most memory held by tensors during the test pass "
    "(torch.cuda.max_memory_allocated, weights included, optimizer state freed before); on CPU the process's "
    "peak resident set size during it (everything the process holds, data-loader workers not counted). "
    "metrics.json's peak_memory_kind says which: cuda_allocated, host_rss, or host_rss_process_lifetime "
    "where the peak could not be reset.",
    "test F1: the F1 of the positive class (label 1), two-class data only; test macro-F1: the mean of "
    "every class's F1, for any number of classes (metrics.json older than it leave the column empty).",
    "params (incl. unused): every weight of encoder and head, including those the forward pass never uses "
    "(BERT's pooler, 590,592 in BERT-base).",
)
ALWAYS = ("model.name", "pooling.name")  # columns of every table, even when only one value ran
ALWAYS_COLUMNS = ("model", "pooling")
SKIP_DIRS = {"best", "wandb", ".hydra", "__pycache__"}
NOT_RECORDED = "(not recorded)"  # the cell value of a key a run's config lacks: another setup, never merged
# torch.compile mode recorded in metrics.json -> the trainer.compile setting that asks for it
COMPILE_SETTING = {None: "false", "default": "true", "reduce-overhead": "reduce-overhead"}
REFERENCE = re.compile(r"\$\{([\w.]+)\}")  # an OmegaConf interpolation of another key: ${seed}


class CollectError(Exception):
    """A user-facing error: one line on stderr and the exit code (1; 2 for a bad argument)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class Run:
    path: Optional[Path]  # None: a job of the sweep that never started
    status: str
    error: str = ""
    config: Dict[str, Any] = field(default_factory=dict)  # flattened .hydra/config.yaml, resolved (see resolve_config)
    has_config: bool = False  # False: no readable .hydra/config.yaml, only what metrics.json names
    overrides: List[str] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    history: Dict[str, List[float]] = field(default_factory=dict)
    cell: tuple = ()
    label: str = ""

    @property
    def seed(self):
        return self.config.get("seed", self.metrics.get("seed"))

    @cached_property
    def finished_at(self) -> float:
        """When its metrics.json was last written: a completed run writes it last."""
        try:
            return (self.path / "metrics.json").stat().st_mtime
        except (OSError, TypeError):
            return 0.0

    @cached_property
    def predictions(self) -> Optional[Tuple[int, np.ndarray]]:
        """(test-set key, correct per example ordered by index); equal keys = the same (index, label) set."""
        import pyarrow.parquet as pq  # read directly: a pandas frame per run costs more than the reading

        try:
            table = pq.read_table(self.path / "predictions_test.parquet", columns=["index", "label", "pred"])
        except Exception:  # missing or unreadable: the run takes no part in the paired tests
            return None
        index, label, pred = (table.column(c).to_numpy() for c in ("index", "label", "pred"))
        order = np.argsort(index, kind="stable")
        index, label = index[order].astype(np.int64), label[order].astype(np.int64)
        return hash((index.tobytes(), label.tobytes())), pred[order] == label


def scan(path: Path) -> Tuple[List[Path], List[Path]]:
    """Run dirs and sweep dirs (with a multirun.yaml) at or below path; never inside a run dir."""
    if (path / ".hydra").is_dir() or (path / "metrics.json").is_file():
        return [path], []
    runs, sweeps = [], [path] if (path / "multirun.yaml").is_file() else []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir() and entry.name not in SKIP_DIRS:
            more_runs, more_sweeps = scan(Path(entry.path))
            runs, sweeps = runs + more_runs, sweeps + more_sweeps
    return runs, sweeps


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
    # a cell key must be hashable and print as written: lists become their JSON text
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else node}


def read_yaml(path: Path) -> Any:
    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_history(path: Path) -> Dict[str, List[float]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {key: [float(row[key] or "nan") for row in rows] for key in (rows[0] if rows else {})}
    except (OSError, ValueError, TypeError):  # missing or half-written: the run draws no line
        return {}


def first_line(text: Any) -> str:
    return str(text).strip().splitlines()[0][:300] if text and str(text).strip() else ""


def resolve_references(config: Dict[str, Any]) -> Dict[str, Any]:
    """`split_seed: ${seed}` -> the seed's value, so that it equals a run that wrote the number itself;
    anything else OmegaConf would compute (custom resolvers) stays as written."""

    def value(text: Any, depth: int = 0) -> Any:
        match = REFERENCE.fullmatch(text) if isinstance(text, str) else None
        return value(config[match[1]], depth + 1) if match and match[1] in config and depth < 10 else text

    return {key: value(v) for key, v in config.items()}


def resolved_by_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """What the run recorded that its `auto` settings became, by config key: precision, the kind of
    device (cuda:0 and cuda:1 are one setup), and the compile setting that ran (eager after a fallback)."""
    resolved = {}
    if metrics.get("precision"):
        resolved["trainer.precision"] = metrics["precision"]
    if metrics.get("device"):
        resolved["trainer.device"] = str(metrics["device"]).split(":")[0]
    if "compile_mode" in metrics:
        mode = None if metrics.get("compile_error") else metrics["compile_mode"]
        resolved["trainer.compile"] = COMPILE_SETTING.get(mode, str(mode))
    return resolved


def resolve_config(config: Dict[str, Any], metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Cells compare what ran, not how it was spelled: interpolations and `auto` become their values."""
    config = resolve_references(config)
    if "trainer.compile" in config:  # YAML false and the string "false" are one setting
        config["trainer.compile"] = str(config["trainer.compile"]).lower()
    config.update({k: v for k, v in resolved_by_metrics(metrics).items() if k in config})
    return config


def load_run(path: Path) -> Run:
    """One run dir -> Run; whatever is missing or unreadable becomes its status, never an exception."""
    run = Run(path, COMPLETED)
    try:
        run.config = flatten(read_yaml(path / ".hydra" / "config.yaml") or {})
        run.has_config = bool(run.config)
        run.overrides = [str(o) for o in read_yaml(path / ".hydra" / "overrides.yaml") or []]
    except FileNotFoundError:
        pass
    except Exception as error:
        run.status, run.error = "unreadable", f".hydra: {type(error).__name__}: {first_line(error)}"
    try:
        run.metrics = json.loads((path / "metrics.json").read_text())
    except FileNotFoundError:
        run.status, run.error = "incomplete", "no metrics.json: killed before the end"
    except Exception as error:
        run.status, run.error = "unreadable", f"metrics.json: {type(error).__name__}: {first_line(error)}"
    if run.status == COMPLETED:
        run.status, run.error = run.metrics.get("status") or "unknown", first_line(run.metrics.get("error"))
        if run.status == "running":
            run.error = run.error or "no final metrics: still running, or killed without a chance to write them"
    run.config = resolve_config(run.config, run.metrics)
    for key, name in (("model", "model.name"), ("pooling", "pooling.name"), ("seed", "seed")):
        run.config.setdefault(name, run.metrics.get(key))  # a run without .hydra still names its cell
    run.history = read_history(path / "history.csv")
    return run


def expected_jobs(sweep_dir: Path) -> List[List[str]]:
    """The jobs a sweep's multirun.yaml asked for, each as its swept `key=value` overrides."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser  # Hydra's own sweep syntax

        task = read_yaml(sweep_dir / "multirun.yaml")["hydra"]["overrides"]["task"]
        swept = [o for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()]
        choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in swept]
    except Exception:  # no readable multirun.yaml or a syntax we cannot expand: call nothing missing
        return []
    return [list(job) for job in itertools.product(*choices)] if choices else []


def missing_runs(sweep_dir: Path, runs: Sequence[Run]) -> List[Run]:
    have = [set(run.overrides) for run in runs if sweep_dir in run.path.parents]
    return [
        Run(None, "missing", "no run dir: not started (the sweep is still running, or stopped early)", overrides=job)
        for job in expected_jobs(sweep_dir)
        if not any(set(job) <= h for h in have)
    ]


def cell_keys(runs: Sequence[Run]) -> List[str]:
    """Config keys that define a cell (see the module docstring), model and pooling first."""
    configs = [run.config for run in runs if run.has_config] or [run.config for run in runs]
    keys = sorted({k for cfg in configs for k in cfg})
    # a key some configs lack (an older schema) is NOT_RECORDED there: it may have meant another setup
    varying = [
        k
        for k in keys
        if k != "seed" and not is_result_neutral(k) and len({repr(cfg.get(k, NOT_RECORDED)) for cfg in configs}) > 1
    ]
    if all(cfg.get("data.split_seed") == cfg.get("seed") for cfg in configs):
        varying = [k for k in varying if k != "data.split_seed"]  # the split just follows the seed

    def follows_group_name(key: str) -> bool:
        group = key.split(".", 1)[0] + ".name"
        per_name: Dict[str, set] = {}
        for cfg in configs:
            per_name.setdefault(repr(cfg.get(group)), set()).add(repr(cfg.get(key, NOT_RECORDED)))
        return group in keys and all(len(values) == 1 for values in per_name.values())

    names = [k for k in varying if k.endswith(".name") and k not in ALWAYS]
    return list(ALWAYS) + names + [k for k in varying if not k.endswith(".name") and not follows_group_name(k)]


def column_name(key: str) -> str:
    return key[: -len(".name")] if key.endswith(".name") and key.count(".") == 1 else key


def assign_cells(runs: Sequence[Run], keys: Sequence[str]) -> None:
    for run in runs:
        if run.path is None:  # a job that never started has only its overrides
            run.label = ", ".join(run.overrides)
            continue
        # a run without .hydra names only its model and pooling: NOT_RECORDED keeps it out of other cells
        run.cell = tuple(run.config.get(k, NOT_RECORDED) for k in keys)
        run.label = ", ".join(f"{column_name(k)}={v}" for k, v in zip(keys, run.cell))


def runs_table(runs: Sequence[Run], keys: Sequence[str]) -> pd.DataFrame:
    """comparison.csv: one row per run (jobs that never started included), every metric and cell key."""
    rows = []
    for run in runs:
        row = {"run_dir": str(run.path or ""), "status": run.status, "cell": run.label}
        row.update({column_name(k): v for k, v in zip(keys, run.cell)})
        row.update({"seed": run.seed, "overrides": " ".join(run.overrides)})
        row.update({k: v for k, v in run.metrics.items() if k not in ("model", "pooling", "seed", "status", "error")})
        rows.append({**row, "error": run.error})
    return pd.DataFrame(rows)


def summarize(cells: Dict[tuple, List[Run]], keys: Sequence[str]) -> pd.DataFrame:
    """summary.csv: one row per cell; mean and sample std (ddof=1) over seeds, a bootstrap CI with one."""
    rows = []
    for cell, group in cells.items():
        row = {column_name(k): v for k, v in zip(keys, cell)}
        row.update({"n": len(group), "seeds": " ".join(str(r.seed) for r in group)})
        for metric in METRICS:
            values = pd.to_numeric(pd.Series([r.metrics.get(metric) for r in group], dtype=object), errors="coerce")
            row[metric], row[f"{metric}_std"] = values.mean(), values.std(ddof=1)
        predictions = group[0].predictions if len(group) == 1 else None
        row["test/acc_ci_low"], row["test/acc_ci_high"] = bootstrap_ci(predictions[1]) if predictions else (None, None)
        rows.append(row)
    columns = [column_name(k) for k in keys] + ["n", "seeds"] + [f"{m}{s}" for m in METRICS for s in ("", "_std")]
    return pd.DataFrame(rows, columns=columns + ["test/acc_ci_low", "test/acc_ci_high"])


def significance(cells: Dict[tuple, List[Run]]) -> pd.DataFrame:
    """One row per pair of cells that share a test set: the test that fits their seeds (sweep.stats),
    its raw p-value, the Holm-adjusted one over all pairs, and the verdict from the adjusted one."""
    rows = []
    for runs_a, runs_b in itertools.combinations(cells.values(), 2):
        result = compare(paired_correct(runs_a, runs_b))
        if result is not None:
            rows.append({"A": runs_a[0].label, "B": runs_b[0].label, **result})
    sig = pd.DataFrame(rows, columns=["A", "B", "test", "seed_pairs", "examples", "acc_diff", "b", "c", "p_value"])
    sig["p_holm"] = holm(sig["p_value"])
    sig["significant"] = sig["p_holm"] < ALPHA
    return sig


def significance_markdown(sig: pd.DataFrame) -> List[str]:
    """The significance table with, next to it, which tests ran, what each one tests, and the verdicts."""
    if sig.empty:
        return ["No two cells share a test set: no paired test."]
    shown = sig.assign(
        p_value=sig["p_value"].map(lambda p: f"{p:.4g}"),
        p_holm=sig["p_holm"].map(lambda p: f"{p:.4g}"),
        significant=sig["significant"].map({True: "yes", False: "no"}),
    )
    parts = [markdown_table(shown), ""]
    counts = sig.test.value_counts()
    parts += [
        f"- **{test}** ({counts[test]} pair{'s' if counts[test] > 1 else ''} of cells): {TEST_MEANINGS[test]}"
        for test in sig.test.unique()
    ]
    comparisons = f"{len(sig)} comparison{'s' if len(sig) > 1 else ''}"
    parts += [
        "",
        f"Verdicts (`significant`) use Holm's correction over all {comparisons} at {ALPHA} "
        "(`p_holm`); `p_value` is each test's raw p-value. acc_diff: test accuracy of A minus B, averaged over "
        'the seed pairs; b (A right, B wrong) and c (the reverse) are summed over them. A "no" means these '
        "runs do not show a difference, not that the cells are equal: with 2 or 3 seed pairs only a large "
        "difference that every seed agrees on can reach significance.",
        "",
    ]
    models, configurations = sig[sig.significant & (sig.test == MCNEMAR)], sig[sig.significant & (sig.test != MCNEMAR)]
    for hits, what in (
        (configurations, "Configurations that differ over seeds"),
        (models, "Trained models that differ (one run per cell: not evidence that one configuration is better)"),
    ):
        if len(hits):
            parts += [
                f"{what}: "
                + "; ".join(f"{r.A} vs {r.B} ({r.acc_diff:+.4f}, p_holm={r.p_holm:.4g})" for r in hits.itertuples())
                + ".",
                "",
            ]
    if not sig.significant.any():
        parts.append(f"No difference is significant at {ALPHA} after Holm's correction.")
    return parts


def plot_curves(plt, runs: Sequence[Run], colors: Dict[str, Any], column: str, title: str, path: Path) -> Dict:
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


STD_BARS, CI_BARS = "std over seeds", "95% bootstrap CI over test examples"


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
    title = f"test accuracy per cell (error bars: {kind})"
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


def make_plots(runs: Sequence[Run], summary: pd.DataFrame, labels: List[str], out: Path) -> Dict:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cycle = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels + [r.label for r in runs]))}
    return {
        "valid_acc.png": plot_curves(
            plt, runs, colors, "valid/acc", "validation accuracy per epoch", out / "valid_acc.png"
        ),
        "train_loss.png": plot_curves(plt, runs, colors, "train/loss", "train loss per epoch", out / "train_loss.png"),
        "test_acc.png": plot_bars(plt, summary, labels, out / "test_acc.png"),
    }


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, (float, np.floating)) else str(value).replace("|", "\\|")


def fmt_fixed(value: Any, decimals: int) -> str:
    return "" if value is None or pd.isna(value) else f"{value:,.{decimals}f}"


def markdown_table(df: pd.DataFrame) -> str:
    head = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    return "\n".join(head + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)])


def display_cells(summary: pd.DataFrame, key_columns: List[str]) -> pd.DataFrame:
    """The cell table as shown: mean ± std with several seeds, and a CI column for one-seed cells."""
    shown = summary[key_columns + ["n"]].copy()
    for metric, header in METRICS.items():
        mean, std, n = summary[metric], summary[f"{metric}_std"], summary["n"]
        if metric in ("params", "best_epoch"):  # counts: no decimals unless seeds disagree
            shown[header] = [fmt(m) if pd.isna(m) or not float(m).is_integer() else f"{int(m):,}" for m in mean]
        else:
            places = DECIMALS.get(metric, 4)
            shown[header] = [
                fmt_fixed(m, places) + (f" ± {fmt_fixed(s, places)}" if k > 1 and not pd.isna(s) else "")
                for m, s, k in zip(mean, std, n)
            ]
        if metric == "test/acc" and (n == 1).any():
            shown["test acc 95% CI"] = [
                f"[{lo:.4f}, {hi:.4f}]" if k == 1 and not pd.isna(lo) else ""
                for lo, hi, k in zip(summary["test/acc_ci_low"], summary["test/acc_ci_high"], n)
            ]
    return shown


def render_markdown(
    shown: pd.DataFrame, sig: pd.DataFrame, problems: Sequence[Run], out: Path, title: str, notes: Sequence[str] = ()
) -> str:
    parts = [
        f"# Comparison: {title}",
        "",
        markdown_table(shown),
        "",
        "Mean ± sample std over seeds (n runs per cell); with one seed, a 95% bootstrap CI of test accuracy.",
    ]
    parts += [line for note in notes for line in ("", note)] + [""] + [f"- {note}" for note in COLUMN_NOTES]
    if problems:
        table = pd.DataFrame(
            [
                {
                    "run": os.path.relpath(r.path, out) if r.path else "",
                    "cell": r.label,
                    "status": r.status,
                    "error": r.error,
                }
                for r in problems
            ]
        )
        parts += ["", f"## Runs not in the table ({len(problems)})", "", markdown_table(table)]
    parts += ["", "## Paired significance", "", *significance_markdown(sig)]
    parts += [
        "",
        "## Plots",
        "",
        "![validation accuracy per epoch](valid_acc.png)",
        "",
        "![train loss per epoch](train_loss.png)",
        "",
        "![test accuracy per cell](test_acc.png)",
        "",
    ]
    return "\n".join(parts)


def latest(root: Path) -> Path:
    """The most recently started sweep under root/multirun, else the most recent run under root/runs."""
    sweeps = scan(root / "multirun")[1] if (root / "multirun").is_dir() else []
    if sweeps:  # multirun.yaml is written when the sweep starts
        return max(sweeps, key=lambda p: (p / "multirun.yaml").stat().st_mtime)
    singles = scan(root / "runs")[0] if (root / "runs").is_dir() else []
    if singles:
        return max(singles, key=lambda p: p.stat().st_mtime)
    raise CollectError(
        f"nothing to collect: no sweep in {(root / 'multirun').resolve()} and no run in {(root / 'runs').resolve()}"
    )


def gather(paths: Sequence[Path], root: Path, all_runs: bool) -> Tuple[List[Run], Path, str]:
    """The runs to collect (jobs that never started included), the default output dir, and a title."""
    if all_runs and not root.is_dir():
        raise CollectError(f"nothing to collect: {root.resolve()} does not exist")
    paths = [root] if all_runs else list(paths) or [latest(root)]
    for path in paths:
        if not path.is_dir():
            raise CollectError(f"{path}: {'not a directory' if path.exists() else 'no such directory'}")
    runs, missing, seen = [], [], set()
    for path in paths:
        run_dirs, sweep_dirs = scan(path)
        fresh = [p for p in run_dirs if p.resolve() not in seen]  # a dir named twice is one run, not a rerun
        seen.update(p.resolve() for p in fresh)
        runs += [load_run(p) for p in fresh]
        missing += [run for sweep_dir in sweep_dirs for run in missing_runs(sweep_dir, runs)]
    if not runs and not missing:
        raise CollectError(
            "nothing to collect: no run dir (one with .hydra/ or metrics.json) in "
            + ", ".join(str(p.resolve()) for p in paths)
        )
    if len(paths) == 1 and not all_runs:
        return runs + missing, paths[0], str(paths[0])
    return runs + missing, root / "collected", f"all runs under {root}" if all_runs else ", ".join(map(str, paths))


def drop_reruns(runs: Sequence[Run]) -> None:
    """One completed run per (cell, seed), the one that finished last: a grid rerun into a new dir and
    collected with the old one must not count a seed twice. The others leave the table, with the reason."""
    newest: Dict[tuple, Run] = {}
    for run in (r for r in runs if r.status == COMPLETED):
        kept = newest.get((run.cell, run.seed))
        if kept is None or (run.finished_at, str(run.path)) > (kept.finished_at, str(kept.path)):
            newest[(run.cell, run.seed)] = run
    for run in (r for r in runs if r.status == COMPLETED):
        kept = newest[(run.cell, run.seed)]
        if kept is not run:
            run.status, run.error = "duplicate", f"same cell and seed as {kept.path}, which finished later"


def group_cells(runs: List[Run]) -> Tuple[List[str], Dict[tuple, List[Run]]]:
    """Finds the cell keys, labels every run, keeps one run per (cell, seed), orders them, and groups
    the completed ones by cell."""
    keys = cell_keys([r for r in runs if r.path])
    assign_cells(runs, keys)
    drop_reruns(runs)
    runs.sort(key=lambda r: (r.path is None, [str(v) for v in r.cell], str(r.seed), str(r.path)))
    cells: Dict[tuple, List[Run]] = {}
    for run in runs:
        if run.status == COMPLETED:
            cells.setdefault(run.cell, []).append(run)
    return keys, cells


@dataclass
class Selection:
    """The tuned view: for each cell of the other keys, the value of `over` with the best `metric`."""

    metric: str  # a validation metric of summary.csv (valid/acc)
    over: str  # a cell column (optim.lr)
    candidates: List[Any]  # the values of `over` that ran

    @property
    def header(self) -> str:
        return f"{self.over} (selected by {METRICS[self.metric]})"

    def note(self) -> str:
        values = ", ".join(map(str, self.candidates))
        return (
            f"Tuned view: for each cell, the {self.over} with the best mean {METRICS[self.metric]} over its "
            f"seeds (of {values}), chosen on validation only, with that setting's test figures; "
            "every run is in comparison.csv and every cell in summary.csv."
        )


def selection(summary: pd.DataFrame, key_columns: List[str], metric: str, over: str) -> Selection:
    """--select METRIC --over KEY checked against what ran: a user-facing error for anything else."""
    if not metric.startswith("valid/"):
        raise CollectError(
            f"--select {metric}: select by a validation metric (valid/acc), never by a test figure", code=2
        )
    if metric not in METRICS:
        raise CollectError(
            f"--select {metric}: no such metric; validation metrics: "
            + ", ".join(m for m in METRICS if m.startswith("valid/")),
            code=2,
        )
    column = column_name(over)
    if column not in key_columns or summary[column].nunique(dropna=False) < 2:
        swept = [c for c in key_columns if summary[c].nunique(dropna=False) > 1]
        raise CollectError(f"--over {over}: not swept in these runs (swept keys: {', '.join(swept) or 'none'})", code=2)
    return Selection(metric, column, list(dict.fromkeys(summary[column])))


def select_best(summary: pd.DataFrame, labels: List[str], key_columns: List[str], chosen: Selection) -> List[int]:
    """Row numbers of summary to keep: per cell of the other keys, the row with the best mean metric
    (ties: the first in table order); cells whose metric is missing everywhere keep their first row."""
    others = [c for c in key_columns if c != chosen.over]
    score = summary[chosen.metric].astype(float).fillna(-math.inf)
    if chosen.metric.endswith("loss"):
        score = -score
    groups = summary.groupby([summary[c].map(repr) for c in others], sort=False) if others else [(None, summary)]
    return sorted(score.loc[group.index].idxmax() for _, group in groups)


def sort_cells(summary: pd.DataFrame, labels: List[str], spec: str) -> Tuple[pd.DataFrame, List[str]]:
    column, descending = spec.lstrip("-"), spec.startswith("-")
    if column not in summary.columns:
        raise CollectError(f"unknown --sort column {column!r}; valid columns: {', '.join(summary.columns)}", code=2)
    values = summary[column]
    # a key some configs lack mixes "(not recorded)" into numbers: those sort last, like missing values
    numeric = pd.to_numeric(values, errors="coerce") if values.map(is_number).any() else values.astype(str)
    order = numeric.sort_values(ascending=not descending, kind="stable", na_position="last").index
    return summary.loc[order].reset_index(drop=True), [labels[i] for i in order]


def is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def write_files(out: Path, markdown: str, tables: Dict[str, pd.DataFrame], plots: Dict) -> None:
    (out / "comparison.md").write_text(markdown)
    for name, table in tables.items():
        table.to_csv(out / name, index=False)
    (out / "plots.json").write_text(json.dumps(plots, indent=1, default=str))


def records(df: pd.DataFrame) -> List[Dict[str, Any]]:
    return df.astype(object).where(df.notna(), None).to_dict("records")  # NaN -> null, full precision


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="sweep dirs and/or run dirs (default: the latest sweep)")
    parser.add_argument("--all", action="store_true", help="collect every run under --outputs")
    parser.add_argument(
        "--outputs", type=Path, default=Path("outputs"), help="where Hydra writes runs (default: outputs)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where tables and plots go (default: the one sweep or run dir collected, else OUTPUTS/collected)",
    )
    parser.add_argument("--format", choices=("md", "csv", "json"), default="md", help="what goes to stdout")
    parser.add_argument(
        "--sort", metavar="COLUMN", help="sort the cells by a column of summary.csv; --sort=-COLUMN sorts descending"
    )
    parser.add_argument(
        "--over",
        metavar="KEY",
        help="tuned view: for each cell of the other keys, keep the value of "
        "this swept key (optim.lr) with the best --select metric",
    )
    parser.add_argument(
        "--select", metavar="METRIC", help="the validation metric --over maximises (default: valid/acc)"
    )
    return parser.parse_args(argv)


def tuned(
    cells: Dict[tuple, List[Run]],
    summary: pd.DataFrame,
    labels: List[str],
    key_columns: List[str],
    args: argparse.Namespace,
) -> Tuple[Dict[tuple, List[Run]], pd.DataFrame, List[str], Optional[Selection]]:
    """The cells the table shows: all of them, or with --over only each one's selected setting."""
    if not args.over:
        if args.select:
            raise CollectError(f"--select {args.select} needs --over KEY: the swept key whose value it chooses", code=2)
        return cells, summary, labels, None
    chosen = selection(summary, key_columns, args.select or "valid/acc", args.over)
    rows = select_best(summary, labels, key_columns, chosen)
    cell_items = list(cells.items())
    return (
        dict(cell_items[i] for i in rows),
        summary.loc[rows].reset_index(drop=True),
        [labels[i] for i in rows],
        chosen,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        runs, out, title = gather(args.paths, args.outputs, args.all)
        keys, all_cells = group_cells(runs)
        key_columns = [column_name(k) for k in keys]
        full_summary, labels = summarize(all_cells, keys), [group[0].label for group in all_cells.values()]
        cells, summary, labels, chosen = tuned(all_cells, full_summary, labels, key_columns, args)
        if args.sort:
            summary, labels = sort_cells(summary, labels, args.sort)
    except CollectError as error:
        print(f"collect: {error}", file=sys.stderr)
        return error.code
    out, sig, table = args.out or out, significance(cells), runs_table(runs, keys)
    problems = [r for r in runs if r.status != COMPLETED]
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots([r for r in runs if r.path and (not chosen or r.cell in cells)], summary, labels, out)
    shown = display_cells(summary, key_columns)
    if chosen:
        shown = shown.rename(columns={chosen.over: chosen.header})
    markdown = render_markdown(shown, sig, problems, out, title, notes=[chosen.note()] if chosen else [])
    tables = {"comparison.csv": table, "summary.csv": full_summary, "significance.csv": sig}
    write_files(out, markdown, {**tables, "tuned.csv": summary} if chosen else tables, plots)

    if args.format == "md":
        print(markdown)
    elif args.format == "csv":
        print(summary.to_csv(index=False), end="")
    else:
        selected = {"metric": chosen.metric, "over": chosen.over, "candidates": chosen.candidates} if chosen else None
        print(
            json.dumps(
                {
                    "out_dir": str(out),
                    "selection": selected,
                    "cells": records(summary),
                    "runs": records(table),
                    "significance": records(sig),
                    "not_in_table": records(table[table.status != COMPLETED]),
                },
                indent=1,
                default=lambda value: value.item() if hasattr(value, "item") else str(value),
            )
        )
    if problems:
        print(
            f"collect: {len(problems)} of {len(runs)} runs not in the table (listed in comparison.md): "
            + ", ".join(sorted({r.status for r in problems})),
            file=sys.stderr,
        )
    print(f"collect: {len(cells)} cells from {len(runs) - len(problems)} completed runs -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
