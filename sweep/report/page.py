"""report.html: the comparison as one self-contained page (styles and images inline, no network; read
with scripts off, the table sortable where they run), written by collect beside its tables. Per task
(a collection of several tasks gets a section each, never one axis for two): the cell table (mean ±
std over seeds, a 95% interval where a cell has several), the significance results in words, the
learning curves, the headline figure per cell, cost against quality with the Pareto front; then the
budget curves and what mattered in a tuned sweep, and the run dirs each row came from."""

import base64
import html
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import pandas as pd

from sweep.config.metrics import headline
from sweep.report.budget import EXPECTED_MAX_PNG
from sweep.report.markdown import COLUMN_NOTES, display_cells
from sweep.report.record import RunRecord
from sweep.report.stats import ALPHA, BOOTSTRAP_SE, MCNEMAR, TEST_MEANINGS
from sweep.report.tables import METRICS

REPORT_HTML = "report.html"
HEADER_METRIC = {header: metric for metric, header in METRICS.items()}  # a shown column -> its summary metric
TASK_WORDS = {"single_label": "single-label classification", "multi_label": "multi-label", "regression": "regression"}
STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}td.text,th.text{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.wide{overflow-x:auto}.yes{color:#0a6d1a;font-weight:bold}.note{color:#555;font-size:12px}section{margin-bottom:2.2em}"""
# a click on a header sorts the rows by that column's data-value (numbers as numbers); again: the other way
SORT_SCRIPT = """document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) { var v = row.cells[column].getAttribute("data-value"); return v === "" ? null : v; }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var nx = Number(x), ny = Number(y), d = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return ascending ? d : -d;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def image(out: Path, name: str, caption: str) -> str:
    """A plot inline as a data URI: the page opens from disk or as an attachment, with no file beside it."""
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}"><figcaption class="note">{esc(caption)}</figcaption></figure>'


def t_interval(mean: float, std: float, n: int) -> str:
    """The 95% t-interval of a cell's mean over its seeds (n > 1)."""
    from scipy.special import stdtrit

    if n < 2 or pd.isna(std):
        return ""
    half = float(stdtrit(n - 1, 0.975)) * std / math.sqrt(n)
    return f"[{mean - half:.4f}, {mean + half:.4f}]"


def table_html(summary: pd.DataFrame, key_columns: List[str], task: str) -> str:
    """The cells as comparison.md shows them, each cell's raw number in data-value for sorting, plus the
    95% interval of the task's headline test figure where a cell has several seeds."""
    shown = display_cells(summary, key_columns)
    metric = headline(task, "test")
    if (summary["n"] > 1).any():
        shown[f"{metric} 95% interval (t, seeds)"] = [
            t_interval(m, s, n) for m, s, n in zip(summary[metric], summary[f"{metric}_std"], summary["n"])
        ]
    head = "".join(
        f'<th class="{"text" if c in key_columns else "num"}" scope="col">{esc(c)}</th>' for c in shown.columns
    )
    rows = []
    for i, row in enumerate(shown.itertuples(index=False)):
        cells = []
        for column, text in zip(shown.columns, row):
            if column in HEADER_METRIC:  # the number behind "0.8123 ± 0.0040": the mean
                value = summary[HEADER_METRIC[column]].iloc[i]
            else:  # a key, n, or an interval's text
                value = summary[column].iloc[i] if column in summary.columns else text
            value = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
            kind = "text" if column in key_columns else "num"
            cells.append(f'<td class="{kind}" data-value="{esc(value)}">{esc(text)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def verdicts(sig: pd.DataFrame, labels: Sequence[str], task: str) -> str:
    """The paired tests among these cells in words: which cell beats which, by how much, how sure."""
    sig = sig[sig.A.isin(labels) & sig.B.isin(labels)]
    if sig.empty:
        return "<p>No two cells share a test set: no paired test.</p>"
    said = []
    for row in sig[sig.significant].itertuples():
        regression = pd.notna(row.mse_diff)
        a_better = row.mse_diff < 0 if regression else row.acc_diff > 0
        better, worse = (row.A, row.B) if a_better else (row.B, row.A)
        what = "test MSE" if regression else ("subset accuracy" if task == "multi_label" else "test accuracy")
        size = abs(row.mse_diff if regression else row.acc_diff)
        said.append(
            f'<li><span class="yes">{esc(better)}</span> beats {esc(worse)}: {what} better by {size:.4f} '
            f"(Holm-adjusted p = {row.p_holm:.3g}, {esc(row.test)}).</li>"
        )
    rest = int((~sig.significant).sum())
    summary = (
        f"<p>{len(said)} of {len(sig)} pairs differ at {ALPHA} after Holm's correction; the other {rest} do "
        "not show a difference in these runs (not proof that they are equal: more seeds may tell).</p>"
    )
    if not said:
        summary = (
            f"<p>No pair of the {len(sig)} differs significantly at {ALPHA} after Holm's correction: choose on "
            "cost, or run more seeds to separate them.</p>"
        )
    tests = "".join(f"<li>{esc(t)}: {esc(TEST_MEANINGS[t])}</li>" for t in sig.test.unique())
    listed = f"<ul>{''.join(said)}</ul>" if said else ""
    if said and sig[sig.significant].test.isin((MCNEMAR, BOOTSTRAP_SE)).any():
        listed += (
            "<p>With one run per cell these compare two trained models, not the configurations: another seed "
            "may rank them otherwise. Run several seeds (seed=1,2,3) to compare configurations.</p>"
        )
    return f'{summary}{listed}<p class="note">Tests used:</p><ul class="note">{tests}</ul>'


def front_words(plot: Dict[str, Any]) -> str:
    """The cells on each cost panel's Pareto front, in words."""
    words = {"train_seconds": "train seconds", "test_samples_per_s": "inference samples/s"}
    parts = []
    for panel in plot.get("panels", []):
        on = [p["label"] for p in panel["points"] if p["front"]]
        parts.append(f"<li>{plot['y']} against {words[panel['x']]}: {esc('; '.join(on)) or 'none'}</li>")
    return f"<p>Cells no other cell beats on both:</p><ul>{''.join(parts)}</ul>"


def task_section(task, summary, labels, key_columns, sig, plots, out, several) -> str:
    """One task's cells: the table, the verdicts, its plots."""
    own = {name: plot for name, plot in plots.items() if plot.get("task") == task}
    curves = [n for n, p in own.items() if p["kind"] == "line"]
    points = [n for n, p in own.items() if p["kind"] == "points"]
    cost = [n for n, p in own.items() if p["kind"] == "cost"]
    title = f" — {TASK_WORDS[task]}" if several else ""
    parts = [
        f'<section id="{task}"><h2>Comparison table{esc(title)}</h2>',
        f'<div class="wide">{table_html(summary, key_columns, task)}</div>',
        '<p class="note">Mean ± sample std over seeds (n runs per cell); a cell of one seed: the 95% bootstrap CI '
        "of test accuracy over its test examples. Click a header to sort.</p>",
        f"<h2>Which cells differ{esc(title)}</h2>",
        verdicts(sig, labels, task),
        f"<h2>Learning curves{esc(title)}</h2>",
        *(image(out, n, own[n]["caption"]) for n in curves + points),
    ]
    if cost:
        parts += [f"<h2>Cost against quality{esc(title)}</h2>", image(out, cost[0], own[cost[0]]["caption"])]
        parts.append(front_words(own[cost[0]]))
    return "".join(parts) + "</section>"


def tuning_section(entries: List[Dict[str, Any]], out: Path) -> str:
    """Each tuned cell's knobs by fANOVA importance, and its trials in parallel coordinates."""
    if not entries:
        return ""
    parts = [
        '<section id="tuning"><h2>What mattered in the tuning</h2><p class="note">fANOVA importance '
        "(optuna.importance): the share of the objective's variance over a cell's finished trials that each "
        "knob explains; importance.csv holds them.</p>"
    ]
    for entry in entries:
        parts.append(f"<h3>{esc(entry['cell'])} ({entry['trials']} finished trials, {entry['direction']})</h3>")
        if "importance" not in entry:
            parts.append(f"<p>{esc(entry['note'])}</p>")
            continue
        rows = "".join(
            f'<tr><td class="text" data-value="{esc(k)}">{esc(k)}</td><td data-value="{v}">{v:.3f}</td></tr>'
            for k, v in entry["importance"].items()
        )
        parts.append('<table class="sortable"><thead><tr><th class="text">knob</th><th>importance</th></tr></thead>')
        parts.append(f"<tbody>{rows}</tbody></table>")
        parts.append(image(out, entry["plot"], f"the trials of {entry['cell']} in parallel coordinates"))
    return "".join(parts) + "</section>"


def runs_section(runs: Sequence[RunRecord], out: Path) -> str:
    """Each cell's run dirs (links relative to the page) with their status and seed."""
    cells: Dict[str, List[RunRecord]] = {}
    for run in runs:
        cells.setdefault(run.label, []).append(run)
    items = []
    for label, group in cells.items():
        links = ", ".join(
            f'<a href="{esc(Path(os.path.relpath(r.path, out)).as_posix())}">{esc(r.path.name)}</a> '
            f"(seed {esc(r.seed)}, {esc(r.status)})"
            if r.path
            else f"not started ({esc(r.error)})"
            for r in group
        )
        items.append(f"<li>{esc(label)}: {links}</li>")
    return f'<section id="runs"><h2>The runs behind each row</h2><ul>{"".join(items)}</ul></section>'


def render_page(title, summary, labels, tasks, key_columns, sig, plots, runs, tuning, out, notes) -> str:
    """The whole page; tasks: the task of each summary row."""
    several = len(set(tasks)) > 1
    sections = []
    for task in dict.fromkeys(tasks):
        rows = [i for i, t in enumerate(tasks) if t == task]
        task_labels = [labels[i] for i in rows]
        own = summary.iloc[rows].reset_index(drop=True)
        sections.append(task_section(task, own, task_labels, key_columns, sig, plots, out, several))
    if EXPECTED_MAX_PNG in plots:
        budget = image(out, EXPECTED_MAX_PNG, plots[EXPECTED_MAX_PNG]["caption"])
        sections.append(f'<section id="budget"><h2>Budget curves</h2>{budget}</section>')
    sections += [tuning_section(tuning, out), runs_section(runs, out)]
    noted = "".join(f"<p>{esc(note)}</p>" for note in notes)
    columns = "".join(f"<li>{esc(note)}</li>" for note in COLUMN_NOTES)
    completed = sum(1 for r in runs if r.path and r.status == "completed")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Comparison: {esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>Comparison: {esc(title)}</h1>"
        f"<p>{len(labels)} cells from {completed} completed runs; collected {time.strftime('%Y-%m-%d %H:%M')}.</p>"
        f'{noted}{"".join(sections)}<details><summary>What each column holds</summary><ul class="note">{columns}'
        f"</ul></details><script>{SORT_SCRIPT}</script></body></html>\n"
    )
