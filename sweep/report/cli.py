"""Finished runs -> the comparison table: one row per cell (model x pooling x any other config key
that varies across the runs), seeds folded into mean ± std, paired significance tests on the saved
test predictions, curves and a bar chart, and every run that did not complete listed by status.

    python sweep/collect.py                          # the most recent sweep under outputs/
    python sweep/collect.py SWEEP_OR_RUN_DIR ...     # given sweep dirs and/or run dirs, combined
    python sweep/collect.py --all --sort=-test/acc --format json
    python sweep/collect.py --select valid/acc --over optim.lr   # each cell at its best lr (by validation)

It reads only the run-directory contract (sweep/rundir.py), plus a sweep's multirun.yaml to name the
jobs that never started, and never imports torch, transformers or the train app: it stays fast.
Cells come from the composed configs (.hydra/config.yaml), never from directory names
(sweep/report/cells.py); values are compared as resolved (${seed}, and `auto` as metrics.json
recorded it: sweep/report/configs.py).
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pandas as pd

from sweep.config.metrics import headline, lower_is_better
from sweep.errors import CollectError
from sweep.report.budget import EXPECTED_MAX_CSV, budget_note, expected_max_table, trials_by_cell
from sweep.report.cells import column_name, group_cells
from sweep.report.gather import gather
from sweep.report.importance import tuning_report
from sweep.report.markdown import FEATURE_CACHE_NOTE, display_cells, render_markdown
from sweep.report.page import REPORT_HTML, render_page
from sweep.report.plots import cell_tasks, make_plots
from sweep.report.tables import SUMMARY_METRICS, Selection, runs_table, significance, sort_cells, summarize, tuned
from sweep.rundir import Status


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
        help="tuned view: for each cell of the other keys, keep the value of this swept key (optim.lr), "
        "or these keys (KEY,KEY...), with the best --select metric; on a hydra/sweeper=tune sweep the "
        "keys it searched, unless given",
    )
    parser.add_argument(
        "--select",
        metavar="METRIC",
        help="the validation metric --over selects by (default: the runs' trainer.select_metric, valid/acc)",
    )
    return parser.parse_args(argv)


def headline_sort(runs) -> Optional[str]:
    """Runs of one task other than single_label are sorted by its headline, best first (regression by
    Pearson r, multi_label by micro-F1); single-label tables keep the grid's order."""
    tasks = {run.metrics.get("task", "single_label") for run in runs if run.metrics}
    task = tasks.pop() if len(tasks) == 1 else "single_label"
    return None if task == "single_label" else "-" + headline(task, "test")


def write_files(out: Path, markdown: str, tables: Dict[str, pd.DataFrame], plots: Dict) -> None:
    (out / "comparison.md").write_text(markdown)
    for name, table in tables.items():
        table.to_csv(out / name, index=False)
    (out / "plots.json").write_text(json.dumps(plots, indent=1, default=str))


def records(df: pd.DataFrame) -> List[Dict[str, Any]]:
    return df.astype(object).where(df.notna(), None).to_dict("records")  # NaN -> null, full precision


def json_report(out: Path, chosen: Optional[Selection], summary, table, sig, budget) -> str:
    """--format json: the output dir, the selection, and every table as records."""
    selected = (
        {"metric": chosen.metric, "over": ",".join(chosen.over), "candidates": chosen.candidates} if chosen else None
    )
    return json.dumps(
        {
            "out_dir": str(out),
            "selection": selected,
            "cells": records(summary),
            "runs": records(table),
            "significance": records(sig),
            "not_in_table": records(table[table.status != Status.COMPLETED]),
            "expected_max_valid": records(budget) if budget is not None else None,
        },
        indent=1,
        default=lambda value: value.item() if hasattr(value, "item") else str(value),
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        gathered = gather(args.paths, args.outputs, args.all)
        runs, out, title = gathered.runs, gathered.out, gathered.title
        keys, all_cells = group_cells(runs)
        key_columns = [column_name(k) for k in keys]
        full_summary, labels = summarize(all_cells, keys), [group[0].label for group in all_cells.values()]
        over = args.over or ",".join(k for k in gathered.searched if column_name(k) in key_columns) or None
        tuned_sweep = bool(gathered.searched) and not args.over
        cells, summary, labels, chosen = tuned(
            all_cells, full_summary, labels, key_columns, over, args.select, tuned_sweep
        )
        sort = args.sort or headline_sort(runs)
        if sort:
            summary, labels = sort_cells(summary, labels, sort)
    except CollectError as error:
        print(f"collect: {error}", file=sys.stderr)
        return error.code
    out, sig, table = args.out or out, significance(cells), runs_table(runs, keys)
    problems = [r for r in runs if r.status != Status.COMPLETED]
    out.mkdir(parents=True, exist_ok=True)
    budget = None  # the expected best by tuning budget: a score to maximise, so not for a loss
    if chosen and not lower_is_better(chosen.metric):
        budget = expected_max_table(trials_by_cell(all_cells, keys, chosen.over, chosen.metric))
    shown_runs = [r for r in runs if r.path and (not chosen or r.cell in cells)]
    plots = make_plots(shown_runs, summary, labels, out, budget)
    shown, notes, tables = display_cells(summary, key_columns), [], {}
    if chosen:
        shown = shown.rename(columns={column: chosen.header(column) for column in chosen.over})
        notes.append(chosen.note())
        tables["tuned.csv"] = summary
    if budget is not None:
        notes.append(budget_note(budget, chosen.over, SUMMARY_METRICS[chosen.metric]))
        tables[EXPECTED_MAX_CSV] = budget
    if any("feature_cache" in r.metrics for r in shown_runs):
        notes.append(FEATURE_CACHE_NOTE)
    markdown = render_markdown(shown, sig, problems, out, title, notes=notes, plots=plots)
    tables = {"comparison.csv": table, "summary.csv": full_summary, "significance.csv": sig, **tables}
    write_files(out, markdown, tables, plots)
    tuning = tuning_report(gathered.journals, out)
    page = render_page(
        title, summary, labels, cell_tasks(runs, labels), key_columns, sig, plots, shown_runs, tuning, out, notes
    )
    (out / REPORT_HTML).write_text(page)
    if args.format == "md":
        print(markdown)
    elif args.format == "csv":
        print(summary.to_csv(index=False), end="")
    else:
        print(json_report(out, chosen, summary, table, sig, budget))
    say_done(runs, problems, len(cells), out)
    return 0


def say_done(runs, problems, cells: int, out: Path) -> None:
    """The runs left out, what went where, and the report page's path on the last line."""
    if problems:
        print(
            f"collect: {len(problems)} of {len(runs)} runs not in the table (listed in comparison.md): "
            + ", ".join(sorted({r.status for r in problems})),
            file=sys.stderr,
        )
    print(f"collect: {cells} cells from {len(runs) - len(problems)} completed runs -> {out}", file=sys.stderr)
    print(f"collect: the report page: {out / REPORT_HTML}", file=sys.stderr)
