"""RunRecord: one run dir as the report reads it (or a job of a sweep that never started), with the
status the report gives it and the cell it lands in."""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sweep.rundir import METRICS_FILE, PREDICTIONS_FILE


@dataclass
class RunRecord:
    path: Optional[Path]  # None: a job of the sweep that never started
    # a metrics.json Status, or the report's own: incomplete, unreadable, missing, unknown, duplicate
    status: str
    error: str = ""
    # flattened .hydra/config.yaml, resolved (sweep/report/configs.py)
    config: Dict[str, Any] = field(default_factory=dict)
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
            return (self.path / METRICS_FILE).stat().st_mtime
        except (OSError, TypeError):
            return 0.0

    @cached_property
    def predictions(self) -> Optional[Tuple[int, np.ndarray]]:
        """(test-set key, score per example ordered by index); equal keys = the same (index, label) set.
        The score: correct (single_label; multi_label: every label right), or the squared error
        (regression: labels and predictions are numbers)."""
        import pyarrow as pa
        import pyarrow.parquet as pq  # read directly: a pandas frame per run costs more than the reading

        try:
            table = pq.read_table(self.path / PREDICTIONS_FILE, columns=["index", "label", "pred"])
        except Exception:  # missing or unreadable: the run takes no part in the paired tests
            return None
        index = table.column("index").to_numpy()
        order = np.argsort(index, kind="stable")
        index = index[order].astype(np.int64)
        if pa.types.is_list(table.schema.field("label").type):  # multi_label: sets of label ids
            label, pred = (table.column(c).to_pylist() for c in ("label", "pred"))
            label, pred = [sorted(label[i]) for i in order], [sorted(pred[i]) for i in order]
            return hash((index.tobytes(), repr(label))), np.array([p == t for p, t in zip(pred, label)])
        label, pred = (table.column(c).to_numpy()[order] for c in ("label", "pred"))
        if pa.types.is_floating(table.schema.field("label").type):  # regression: the squared errors
            truth = label.astype(np.float64)
            return hash((index.tobytes(), truth.tobytes())), (pred.astype(np.float64) - truth) ** 2
        label = label.astype(np.int64)
        return hash((index.tobytes(), label.tobytes())), pred == label
