"""What each cell costs against what it gains: the task's headline test figure against the train
loop's seconds (less is better) and against inference samples/s (more is better), each cell a point,
the cells that no other cell beats on both marked and joined (the Pareto front)."""

from pathlib import Path
from typing import Dict, List, Sequence

import pandas as pd

from sweep.config.metrics import headline

# cost column -> (its words on the axis, whether more of it is better)
COSTS = {
    "train_seconds": ("train loop (s)", False),
    "test_samples_per_s": ("inference samples/s (test)", True),
}


def pareto_front(costs: Sequence[float], qualities: Sequence[float], more_cost_is_better: bool) -> List[bool]:
    """Per point, whether no other point is at least as good on both axes and better on one (points
    missing either value are never on it). Quality: higher is better."""
    sign = 1.0 if more_cost_is_better else -1.0
    points = [(sign * c, q) for c, q in zip(costs, qualities)]
    known = [not (pd.isna(c) or pd.isna(q)) for c, q in points]

    def beaten(i: int) -> bool:
        c, q = points[i]
        return any(
            known[j] and j != i and points[j][0] >= c and points[j][1] >= q and points[j] != points[i]
            for j in range(len(points))
        )

    return [known[i] and not beaten(i) for i in range(len(points))]


def cost_name(task: str, several_tasks: bool) -> str:
    return f"cost_{task}.png" if several_tasks else "cost.png"


def plot_cost(plt, summary: pd.DataFrame, labels: List[str], task: str, out: Path, several_tasks: bool) -> Dict:
    """One panel per cost; returns plots.json's record, by file name (nothing where no cell has a cost)."""
    metric = headline(task, "test")
    panels = [column for column in COSTS if summary[column].notna().any()]
    if not panels or summary[metric].isna().all():
        return {}
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    record = {"kind": "cost", "y": metric, "panels": []}
    for ax, column in zip(axes[0], panels):
        words, more_is_better = COSTS[column]
        x, y = summary[column].tolist(), summary[metric].tolist()
        front = pareto_front(x, y, more_is_better)
        ax.scatter(x, y, color="tab:gray", label="a cell")
        on = sorted((xi, yi) for xi, yi, f in zip(x, y, front) if f)
        ax.plot(
            [p[0] for p in on], [p[1] for p in on], "o-", color="tab:red", label="Pareto front: none beats it on both"
        )
        for xi, yi, label in zip(x, y, labels):
            if not (pd.isna(xi) or pd.isna(yi)):
                ax.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"{words} ({'more' if more_is_better else 'less'} is better)", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        record["panels"].append(
            {
                "x": column,
                "points": [{"label": lb, "x": xi, "y": yi, "front": f} for lb, xi, yi, f in zip(labels, x, y, front)],
            }
        )
    caption = f"{metric} against cost per cell (red: the Pareto front)"
    fig.suptitle(caption)
    fig.tight_layout()
    name = cost_name(task, several_tasks)
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return {name: {**record, "caption": caption}}
