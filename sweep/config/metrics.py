"""The metrics of each task (data.task) and the validation metric that chooses a run's best
checkpoint (trainer.select_metric): the one rule of which value is better, shared by the fitting
loop (best checkpoint, early stopping), the tune sweeper (its studies' direction and objective) and
collect's tuned view. Imports nothing: the report and the schema read it without torch or Hydra."""

import math
from typing import List, Optional

# data.task -> the metrics of each validation (history rows, valid/<name>) and of the test pass (test/<name>)
TASK_METRICS = {
    "single_label": {"valid": ("loss", "acc", "macro_f1"), "test": ("acc", "f1", "macro_f1", "loss")},
    "multi_label": {
        "valid": ("loss", "micro_f1", "macro_f1", "subset_acc"),
        "test": ("micro_f1", "macro_f1", "subset_acc", "loss"),
    },
    "regression": {"valid": ("loss", "pearson", "spearman", "mse"), "test": ("pearson", "spearman", "mse", "loss")},
}
TASKS = tuple(TASK_METRICS)
# each task's headline (the first figure of the table, what the tuned view selects by unless told)
TASK_DEFAULT_METRIC = {"single_label": "valid/acc", "multi_label": "valid/micro_f1", "regression": "valid/pearson"}
DEFAULT_METRIC = TASK_DEFAULT_METRIC["single_label"]  # the seed recipe's
LOWER_IS_BETTER = ("loss", "mse")  # every other metric: higher is better
SELECT_METRICS = tuple(dict.fromkeys(f"valid/{m}" for task in TASK_METRICS.values() for m in task["valid"]))


def headline(task: str, split: str) -> str:
    """The task's headline metric of a split: valid/acc, test/micro_f1, test/pearson..."""
    return TASK_DEFAULT_METRIC[task].replace("valid/", f"{split}/")


def task_metrics(task: str, split: str) -> List[str]:
    """The task's metrics of a split as split/name (valid/acc, test/pearson, ...)."""
    return [f"{split}/{name}" for name in TASK_METRICS[task]["valid" if split == "valid" else "test"]]


def select_metric(task: str, chosen: Optional[str]) -> str:
    """trainer.select_metric as a run uses it: the task's headline where null."""
    return chosen or TASK_DEFAULT_METRIC[task]


def metric_problem(task: str, chosen: Optional[str]) -> Optional[str]:
    """Why trainer.select_metric does not fit data.task (None: it does)."""
    if chosen is None or chosen in task_metrics(task, "valid"):
        return None
    return (
        f"trainer.select_metric={chosen} is not a metric of data.task={task}; "
        f"use one of {', '.join(task_metrics(task, 'valid'))} (or null: {TASK_DEFAULT_METRIC[task]})"
    )


def lower_is_better(metric: str) -> bool:
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def direction(metric: Optional[str]) -> str:
    """Optuna's word for the way this metric improves (null: a task's headline, all higher-is-better)."""
    return "minimize" if metric and lower_is_better(metric) else "maximize"


def improves(metric: str, value: float, best: Optional[float]) -> bool:
    """Strictly better than the best so far (ties keep the earlier validation); a NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best if lower_is_better(metric) else value > best
