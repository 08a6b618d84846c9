"""The expected best validation score as a function of the tuning budget (Dodge et al. 2019, "Show
Your Work"), for the tuned view (--over KEY): each cell of the other keys has N trials (its runs over
KEY's values and seeds); for n = 1..N, the expected best of n trials drawn at random from them
(sweep.report.stats.expected_max), ± one standard deviation. Cells whose curves cross rank differently at
different budgets; a cell with fewer trials than the others is named."""

import itertools
from typing import Dict, List, Sequence, Tuple

import pandas as pd

from sweep.report.cells import cell_label, column_name
from sweep.report.record import RunRecord
from sweep.report.stats import expected_max

EXPECTED_MAX_CSV, EXPECTED_MAX_PNG = "expected_max_valid.csv", "expected_max_valid.png"
COLUMNS = ["cell", "n", "expected_max_valid", "std"]


def trials_by_cell(cells: Dict[tuple, List[RunRecord]], keys: Sequence[str], over: Sequence[str], metric: str):
    """Each cell of the keys other than those in `over` (column names) -> its trials' validation scores."""
    others = [i for i, key in enumerate(keys) if column_name(key) not in over]
    trials: Dict[str, List[float]] = {}
    for cell, runs in cells.items():
        label = cell_label([keys[i] for i in others], [cell[i] for i in others]) or "all runs"
        scores = [run.metrics.get(metric) for run in runs]
        trials.setdefault(label, []).extend(score for score in scores if score is not None)
    return {label: scores for label, scores in trials.items() if scores}


def expected_max_table(trials: Dict[str, List[float]]) -> pd.DataFrame:
    rows = []
    for label, scores in trials.items():
        mean, std = expected_max(scores)
        rows += [(label, n, m, s) for n, (m, s) in enumerate(zip(mean, std), start=1)]
    return pd.DataFrame(rows, columns=COLUMNS)


def crossings(table: pd.DataFrame) -> List[Tuple[str, str]]:
    """Pairs of cells one of which is ahead at some budget and behind at another (n = 1..the smaller N)."""
    curves = {label: group["expected_max_valid"].to_numpy() for label, group in table.groupby("cell", sort=False)}
    crossed = []
    for (a, curve_a), (b, curve_b) in itertools.combinations(curves.items(), 2):
        common = min(len(curve_a), len(curve_b))
        ahead = curve_a[:common] - curve_b[:common]
        if (ahead > 1e-12).any() and (ahead < -1e-12).any():
            crossed.append((a, b))
    return crossed


def budget_note(table: pd.DataFrame, over: Sequence[str], metric_name: str) -> str:
    sizes = table.groupby("cell", sort=False)["n"].max()
    note = (
        f"Expected best {metric_name} by tuning budget ({EXPECTED_MAX_CSV}, {EXPECTED_MAX_PNG}; Dodge et al. "
        f'2019, "Show Your Work"): for n = 1..N trials drawn at random from a cell\'s runs over {" and ".join(over)}, the '
        f"expected best {metric_name}, ± one std. At n = 1 it is the cell's mean over its trials; it rises "
        "towards the cell's best as n grows."
    )
    crossed = crossings(table)
    if crossed:
        pairs = "; ".join(f"{a} and {b}" for a, b in crossed)
        note += f" Curves that cross, so their ranking depends on the budget: {pairs}."
    else:
        note += " No two curves cross: the ranking is the same at every budget up to the smaller N."
    fewer = sizes[sizes < sizes.max()]
    if len(fewer):
        note += " Fewer trials than the others: " + ", ".join(f"{c} ({n} of {sizes.max()})" for c, n in fewer.items())
        note += "."
    return note + f"\n\n![expected best {metric_name} by budget]({EXPECTED_MAX_PNG})"
