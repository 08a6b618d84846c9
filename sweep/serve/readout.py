"""What a served run's task reads from its head's outputs (the logits, n x outputs), in numpy alone so
torch and ONNX Runtime are read the same way and the onnx path needs no torch: single_label a class
(softmax), multi_label a set of labels (a sigmoid per label at the run's threshold), regression a number
(the standardization undone). Also how two readings of the same rows are compared: the export's
check and bench --inference say how often a backend gives torch's answer."""

from typing import Any, Dict, List

import numpy as np

# regression: an int8 prediction agrees with torch's within this share of the target's standard deviation
# (the train split's, in best/classifier.json): a tenth of the spread, well inside what separates the
# targets a user reads apart. fp32 must agree within FP32_TOLERANCE of it, as probabilities must.
REGRESSION_TOLERANCE = 0.1


def task_of(meta: Dict[str, Any]) -> str:
    return meta.get("task", "single_label")  # checkpoints from before tasks were single-label


def label_names(meta: Dict[str, Any], num_labels: int) -> List[str]:
    """The class names saved with the checkpoint; checkpoints saved before they were recorded come
    from the project's binary datasets (IMDB, generated reviews), labelled neg/pos."""
    from sweep.rundir import LABEL_NAMES

    if meta.get("label_names"):
        return list(meta["label_names"])
    return list(LABEL_NAMES) if num_labels == len(LABEL_NAMES) else [f"class_{i}" for i in range(num_labels)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def read(outputs: np.ndarray, meta: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """pred per row (a class id, a boolean row of labels, or a number in the target's units) and,
    for the classifying tasks, probs (n x classes or labels)."""
    outputs = np.asarray(outputs, dtype=np.float32)
    task = task_of(meta)
    if task == "regression":
        return {"pred": outputs[:, 0].astype(np.float64) * meta["target_std"] + meta["target_mean"]}
    if task == "multi_label":
        probs = sigmoid(outputs)
        return {"pred": probs >= meta.get("threshold", 0.5), "probs": probs}
    probs = softmax(outputs)
    return {"pred": probs.argmax(axis=1), "probs": probs}


def table(reading: Dict[str, np.ndarray], meta: Dict[str, Any]):
    """predict.py's rows, in input order: label, class_id and prob_<label> (single_label); labels (the
    predicted set, comma-separated) and prob_<label> (multi_label); pred, the number (regression)."""
    import pandas as pd

    task = task_of(meta)
    if task == "regression":
        return pd.DataFrame({"pred": reading["pred"]})
    probs = reading["probs"]
    names = label_names(meta, probs.shape[1])
    if task == "multi_label":
        chosen = [",".join(name for name, on in zip(names, row) if on) for row in reading["pred"]]
        frame = pd.DataFrame({"labels": chosen})
    else:
        frame = pd.DataFrame({"label": [names[i] for i in reading["pred"]], "class_id": reading["pred"]})
    for i, name in enumerate(names):
        frame[f"prob_{name}"] = probs[:, i]
    return frame


def agrees(reading: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], meta: Dict[str, Any]) -> np.ndarray:
    """Per row, whether a reading gives the reference's answer: the same class, the same label set, or
    a number within REGRESSION_TOLERANCE of the target's standard deviation."""
    pred, expected = reading["pred"], reference["pred"]
    task = task_of(meta)
    if task == "regression":
        return np.abs(pred - expected) <= REGRESSION_TOLERANCE * meta["target_std"]
    if task == "multi_label":
        return (pred == expected).all(axis=1)
    return pred == expected


def difference(reading: Dict[str, np.ndarray], reference: Dict[str, np.ndarray], meta: Dict[str, Any]) -> np.ndarray:
    """Per row, how far a reading is from the reference: the largest probability difference, or for
    regression the prediction's difference in units of the target's standard deviation (so one
    tolerance fits every task)."""
    if task_of(meta) == "regression":
        return np.abs(reading["pred"] - reference["pred"]) / meta["target_std"]
    return np.abs(reading["probs"] - reference["probs"]).max(axis=1)


# what `difference` measures and what an answer is, per task: the words of the check's record and lines
DIFFERENCE_OF = {"single_label": "prob", "multi_label": "prob", "regression": "std"}
ANSWER_OF = {
    "single_label": "labels",
    "multi_label": "label sets",
    "regression": f"predictions (within {REGRESSION_TOLERANCE} target std)",
}
