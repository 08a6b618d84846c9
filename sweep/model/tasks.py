"""What a row's label is and how the head learns it (data.task): single_label (one class of k: softmax
cross-entropy, the seed's), multi_label (a set of k labels: a sigmoid per label, BCE-with-logits,
predicted where the probability is at least trainer.threshold) and regression (a number: one output,
MSE on the target standardized by the train split's mean and std, undone for every figure). Each
task's loss, its training hits, its per-batch outputs, its metrics and its prediction columns.
The metric names of each task are in sweep/config/metrics.py (TASK_METRICS)."""

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F


def f1_of(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def class_f1(labels: torch.Tensor, preds: torch.Tensor, cls: int) -> float:
    """F1 of one class against the rest (0 when the class is neither predicted nor present)."""
    tp = int(((preds == cls) & (labels == cls)).sum())
    fp = int(((preds == cls) & (labels != cls)).sum())
    fn = int(((preds != cls) & (labels == cls)).sum())
    return f1_of(tp, fp, fn)


def macro_f1(labels: torch.Tensor, preds: torch.Tensor, f1s: List[float]) -> float:
    """Mean F1 over the classes that occur in the labels or predictions (sklearn's macro average over
    its labels); a class absent from both, e.g. from a capped split, would only add an arbitrary 0."""
    seen = set(labels.tolist()) | set(preds.tolist())
    return sum(f1s[c] for c in seen) / len(seen)


class SingleLabel:
    name, has_accuracy = "single_label", True

    def loss(self, logits, labels, weight=None, reduction="mean"):
        return F.cross_entropy(logits.float(), labels, weight=weight, reduction=reduction)

    def hits(self, logits, labels):
        return (logits.argmax(dim=-1) == labels).sum()

    def outputs(self, logits) -> Dict[str, torch.Tensor]:
        """Per-row outputs of one batch of (float) logits."""
        return {"preds": logits.argmax(dim=-1), "probs": logits.softmax(dim=-1)}

    def metrics(self, labels, out) -> Dict[str, Optional[float]]:
        preds, n, n_classes = out["preds"], len(labels), out["probs"].shape[1]
        f1s = [class_f1(labels, preds, c) for c in range(n_classes)]
        return {
            "acc": int((preds == labels).sum()) / n,  # exact, not a float32 mean
            "f1": f1s[1] if n_classes == 2 else None,  # binary F1 of the positive class; none for more classes
            "macro_f1": macro_f1(labels, preds, f1s),
        }

    def columns(self, result) -> Dict[str, np.ndarray]:
        """predictions_test.parquet: index, label, pred, prob_<i> for every class i (and prob_pos for
        two classes, which older readers use)."""
        probs = result["probs"]
        columns = {"index": result["idx"], "label": result["labels"], "pred": result["preds"]}
        if probs.shape[1] == 2:
            columns["prob_pos"] = probs[:, 1]
        columns.update({f"prob_{i}": probs[:, i] for i in range(probs.shape[1])})
        return columns


class MultiLabel:
    name, has_accuracy = "multi_label", True  # its training accuracy: subset accuracy (every label right)

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def loss(self, logits, labels, weight=None, reduction="mean"):
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none").mean(dim=-1)
        return loss.sum() if reduction == "sum" else loss.mean()

    def predicted(self, logits):
        return logits.float().sigmoid() >= self.threshold

    def hits(self, logits, labels):
        return (self.predicted(logits) == labels.bool()).all(dim=-1).sum()

    def outputs(self, logits):
        probs = logits.sigmoid()
        return {"preds": probs >= self.threshold, "probs": probs}

    def metrics(self, labels, out):
        truth, preds = labels.bool(), out["preds"]
        tp, fp, fn = ((preds & truth).sum(0), (preds & ~truth).sum(0), (~preds & truth).sum(0))
        seen = (truth | preds).any(dim=0)  # labels present or predicted, as single_label's macro average
        per_label = [f1_of(int(tp[j]), int(fp[j]), int(fn[j])) for j in range(truth.shape[1]) if seen[j]]
        return {
            "micro_f1": f1_of(int(tp.sum()), int(fp.sum()), int(fn.sum())),
            "macro_f1": sum(per_label) / len(per_label) if per_label else 0.0,
            "subset_acc": int((preds == truth).all(dim=1).sum()) / len(truth),
        }

    def columns(self, result):
        """index, label and pred as lists of label ids, prob_<i> for every label i."""
        ids = lambda rows: [np.flatnonzero(row).tolist() for row in rows]  # noqa: E731
        columns = {"index": result["idx"], "label": ids(result["labels"]), "pred": ids(result["preds"])}
        columns.update({f"prob_{i}": result["probs"][:, i] for i in range(result["probs"].shape[1])})
        return columns


class Regression:
    name, has_accuracy = "regression", False

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean, self.std = mean, std  # the train split's: the head learns (y - mean) / std

    def loss(self, logits, labels, weight=None, reduction="mean"):
        standardized = ((labels - self.mean) / self.std).float()  # labels: the numbers as given (float64)
        return F.mse_loss(logits.float().squeeze(-1), standardized, reduction=reduction)

    def hits(self, logits, labels):
        return torch.zeros((), dtype=torch.long, device=labels.device)

    def outputs(self, logits):
        return {"preds": logits.squeeze(-1).double() * self.std + self.mean}

    def metrics(self, labels, out):
        from scipy.stats import rankdata  # average ranks: targets often tie (STS-B's 0.5 steps)

        truth, preds = labels.double().numpy(), out["preds"].double().numpy()
        return {
            "pearson": pearson(truth, preds),
            "spearman": pearson(rankdata(truth), rankdata(preds)),
            "mse": float(np.mean((truth - preds) ** 2)),  # in the target's own units
        }

    def columns(self, result):
        return {"index": result["idx"], "label": result["labels"], "pred": result["preds"]}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r; NaN where either side is constant (a constant predictor correlates with nothing)."""
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def make_task(name: str = "single_label", threshold: float = 0.5, target: Optional[Tuple[float, float]] = None):
    """The task of data.task; target: regression's (mean, std) of the train split."""
    if name == "multi_label":
        return MultiLabel(threshold)
    if name == "regression":
        return Regression(*(target or (0.0, 1.0)))
    return SingleLabel()


SINGLE_LABEL = SingleLabel()  # the task of a caller that names none (the benchmark, the seed recipe)
