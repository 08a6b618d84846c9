"""Two or more classes: metrics, the predictions file, a 4-class run that learns, and collect on it."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers.app import train_in_process
from sweep.fit.evaluate import evaluate
from sweep.model.tasks import SingleLabel
from sweep.report.cli import main as collect_main
from sweep.report.stats import MCNEMAR


class FixedLogits(nn.Module):
    """A 'model' whose logits per example are given: evaluate's metrics become hand-checkable."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def forward(self, input_ids, attention_mask):
        return self.logits[input_ids[:, 0]]


def evaluate_fixed(labels, preds, n_classes):
    logits = np.full((len(labels), n_classes), -5.0)
    logits[np.arange(len(labels)), preds] = 5.0
    rows = torch.arange(len(labels))
    batch = {
        "input_ids": rows[:, None],
        "attention_mask": torch.ones(len(labels), 1, dtype=torch.long),
        "labels": torch.tensor(labels),
        "idx": rows + 100,
    }
    return evaluate(FixedLogits(logits), [batch], torch.device("cpu"))


def test_two_classes_keep_the_positive_f1_and_prob_pos():
    result = evaluate_fixed(labels=[1, 1, 1, 0, 0], preds=[1, 1, 0, 1, 0], n_classes=2)
    assert result["acc"] == pytest.approx(3 / 5)
    assert result["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # class 0: tp 1, fp 1, fn 1
    columns = SingleLabel().columns(result)
    assert list(columns) == ["index", "label", "pred", "prob_pos", "prob_0", "prob_1"]
    assert np.array_equal(columns["prob_pos"], columns["prob_1"]) and list(columns["index"]) == [
        100,
        101,
        102,
        103,
        104,
    ]


def test_more_classes_get_macro_f1_and_a_probability_per_class():
    labels, preds = [0, 1, 2, 3, 3, 2], [0, 1, 2, 3, 2, 2]
    result = evaluate_fixed(labels, preds, n_classes=4)
    per_class = [1.0, 1.0, 2 * 2 / (2 * 2 + 1), 2 * 1 / (2 * 1 + 1)]
    assert result["acc"] == pytest.approx(5 / 6) and result["f1"] is None
    assert result["macro_f1"] == pytest.approx(sum(per_class) / 4)
    columns = SingleLabel().columns(result)
    assert list(columns) == ["index", "label", "pred", "prob_0", "prob_1", "prob_2", "prob_3"]
    probs = np.stack([columns[f"prob_{i}"] for i in range(4)], axis=1)
    assert probs.sum(axis=1) == pytest.approx(1.0) and list(probs.argmax(axis=1)) == preds


def test_four_class_synthetic_runs_learn_and_collect_compares_them(tmp_path, capsys):
    """Two tiny 4-class runs (chance 0.25) in the smoke budget; collect, McNemar and the plots on them."""
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        "experiment=smoke",
        "model=bert",
        "pooling=cls,mean",
        "data.n_classes=4",
        "data.n_samples=800",
        "data.max_len=32",
        "trainer.epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    runs = sorted(p.parent for p in sweep_dir.glob("*/metrics.json"))
    assert len(runs) == 2
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["test/acc"] > 0.5, metrics
        assert 0.4 < metrics["test/macro_f1"] <= 1 and metrics["test/f1"] is None
        predictions = pd.read_parquet(run / "predictions_test.parquet")
        assert list(predictions.columns) == ["index", "label", "pred", "prob_0", "prob_1", "prob_2", "prob_3"]
        probs = predictions[[f"prob_{i}" for i in range(4)]].to_numpy()
        assert probs.sum(axis=1) == pytest.approx(1.0, abs=1e-5)
        assert (probs.argmax(axis=1) == predictions["pred"]).all() and set(predictions["label"]) == {0, 1, 2, 3}
        assert (predictions["pred"] == predictions["label"]).mean() == pytest.approx(metrics["test/acc"])
        best = json.loads((run / "best" / "classifier.json").read_text())
        assert best["num_labels"] == 4 and best["label_names"] == ["film", "food", "hotel", "phone"]
    out = tmp_path / "table"
    assert collect_main([str(sweep_dir), "--out", str(out), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [cell["test/macro_f1"] for cell in sorted(result["cells"], key=lambda c: c["pooling"])] == [
        pytest.approx(json.loads((run / "metrics.json").read_text())["test/macro_f1"]) for run in runs
    ]
    (pair,) = result["significance"]
    assert pair["test"] == MCNEMAR and pair["examples"] == len(pd.read_parquet(runs[0] / "predictions_test.parquet"))
    assert "test macro-F1" in (out / "comparison.md").read_text()
    assert all((out / name).is_file() for name in ("valid_acc.png", "train_loss.png", "test_acc.png"))
