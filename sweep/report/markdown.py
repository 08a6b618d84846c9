"""comparison.md: the cell table as shown (mean ± std over seeds, a CI for one-seed cells), what each
column holds, the runs not in the table, the paired significance section and the plots."""

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from sweep.report.record import RunRecord
from sweep.report.stats import ALPHA, BOOTSTRAP_SE, MCNEMAR, TEST_MEANINGS
from sweep.report.tables import METRICS, SINGLE_LABEL_ONLY, TASK_ONLY

# shown precision (else 4); CSV and JSON keep every digit
DECIMALS = {
    "train_seconds": 1,
    "train_samples_per_s": 0,
    "test_samples_per_s": 0,
    "onnx_int8_samples_per_s": 0,
    "peak_memory_mib": 0,
    "data/test_cut_frac": 3,
}
# what the job records under those names (sweep/rundir.py METRICS_FIELDS)
COLUMN_NOTES = (
    "train acc (running, best epoch): the accuracy over the best epoch's training batches while they were "
    "trained, with dropout on and the weights changing; not the best checkpoint evaluated on the train split.",
    "test texts cut: the share of the test texts longer than the run reads (data.max_len tokens, or "
    "data.max_chunks windows with data.truncation=chunks), counted with the run's tokenizer; metrics.json's "
    "data/test_tokens_p50, _p90, _p99 and _max give their lengths (empty for runs from before it).",
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
    "onnx int8 samples/s: the run's int8 ONNX export (encoder-sweep-export RUN_DIR --quantize int8) in ONNX "
    "Runtime on the CPU, batch 32, over the test rows its check ran on (best/onnx/export.json); empty for a run "
    "not exported.",
    "test F1: the F1 of the positive class (label 1), two-class data only; test macro-F1: the mean of "
    "every class's F1, for any number of classes (metrics.json older than it leave the column empty).",
    "params (incl. unused): every weight of encoder and head, including those the forward pass never uses "
    "(BERT's pooler, 590,592 in BERT-base), and LoRA's adapters; trainable params: those training changed "
    "(all of them for method=finetune, the pooling and head for frozen, plus the adapters for lora).",
)
# said under the table when some run trained on cached features
FEATURE_CACHE_NOTE = (
    "method=frozen on cached features (cls, mean, max, cls_mean): its train loop includes the encoding of "
    "every split that the run did (metrics.json feature_cache=miss) or its reading of the cache (hit), and its "
    "inference figures are those of the encoder's pass over the test split when the features were encoded."
)


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
    other_task = any(summary[m].notna().any() for m in TASK_ONLY)  # multi_label or regression runs
    for metric, header in METRICS.items():
        if summary[metric].isna().all() and (metric in TASK_ONLY or (other_task and metric in SINGLE_LABEL_ONLY)):
            continue  # a figure of another task than these runs'
        mean, std, n = summary[metric], summary[f"{metric}_std"], summary["n"]
        if metric in ("params", "trainable_params", "best_epoch"):  # counts: no decimals unless seeds disagree
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


def significance_notes(sig: pd.DataFrame) -> List[str]:
    """Under the significance table: which tests ran and what each tests, how to read the verdicts."""
    counts = sig.test.value_counts()
    parts = [
        f"- **{test}** ({counts[test]} pair{'s' if counts[test] > 1 else ''} of cells): {TEST_MEANINGS[test]}"
        for test in sig.test.unique()
    ]
    comparisons = f"{len(sig)} comparison{'s' if len(sig) > 1 else ''}"
    return parts + [
        "",
        f"Verdicts (`significant`) use Holm's correction over all {comparisons} at {ALPHA} "
        "(`p_holm`); `p_value` is each test's raw p-value. acc_diff: test accuracy of A minus B, averaged over "
        "the seed pairs (multi_label: subset accuracy; regression: mse_diff, test MSE of A minus B); "
        'b (A right, B wrong) and c (the reverse) are summed over them. A "no" means these '
        "runs do not show a difference, not that the cells are equal: with 2 or 3 seed pairs only a large "
        "difference that every seed agrees on can reach significance.",
        "",
    ]


def difference(row) -> str:
    """A pair's difference as the verdicts show it: accuracy, or MSE for regression."""
    return f"MSE {row.mse_diff:+.4f}" if pd.notna(row.mse_diff) else f"{row.acc_diff:+.4f}"


def significance_verdicts(sig: pd.DataFrame) -> List[str]:
    """The significant pairs in words, configurations apart from trained models."""
    parts = []
    one_run = sig.test.isin((MCNEMAR, BOOTSTRAP_SE))  # tests of two trained models, not of configurations
    models, configurations = sig[sig.significant & one_run], sig[sig.significant & ~one_run]
    for hits, what in (
        (configurations, "Configurations that differ over seeds"),
        (models, "Trained models that differ (one run per cell: not evidence that one configuration is better)"),
    ):
        if len(hits):
            parts += [
                f"{what}: "
                + "; ".join(f"{r.A} vs {r.B} ({difference(r)}, p_holm={r.p_holm:.4g})" for r in hits.itertuples())
                + ".",
                "",
            ]
    if not sig.significant.any():
        parts.append(f"No difference is significant at {ALPHA} after Holm's correction.")
    return parts


def significance_markdown(sig: pd.DataFrame) -> List[str]:
    """The significance table with, next to it, which tests ran, what each one tests, and the verdicts."""
    if sig.empty:
        return ["No two cells share a test set: no paired test."]
    shown = sig.assign(
        p_value=sig["p_value"].map(lambda p: f"{p:.4g}"),
        p_holm=sig["p_holm"].map(lambda p: f"{p:.4g}"),
        significant=sig["significant"].map({True: "yes", False: "no"}),
    )
    return [markdown_table(shown), "", *significance_notes(sig), *significance_verdicts(sig)]


def problems_markdown(problems: Sequence[RunRecord], out: Path) -> List[str]:
    """The runs not in the table, each with its dir (relative to the output dir), cell, status and error."""
    if not problems:
        return []
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
    return ["", f"## Runs not in the table ({len(problems)})", "", markdown_table(table)]


def render_markdown(
    shown: pd.DataFrame,
    sig: pd.DataFrame,
    problems: Sequence[RunRecord],
    out: Path,
    title: str,
    notes: Sequence[str] = (),
    plots: Optional[Dict[str, Dict[str, Any]]] = None,
) -> str:
    parts = [
        f"# Comparison: {title}",
        "",
        markdown_table(shown),
        "",
        "Mean ± sample std over seeds (n runs per cell); with one seed, a 95% bootstrap CI of test accuracy.",
    ]
    parts += [line for note in notes for line in ("", note)] + [""] + [f"- {note}" for note in COLUMN_NOTES]
    parts += problems_markdown(problems, out)
    parts += ["", "## Paired significance", "", *significance_markdown(sig)]
    parts += ["", "## Plots", ""]
    parts += [line for name, plot in (plots or {}).items() for line in (f"![{plot['caption']}]({name})", "")]
    return "\n".join(parts)
