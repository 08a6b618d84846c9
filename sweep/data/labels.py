"""A label column as data.task reads it: single_label: integers or strings -> class ids 0..k-1 (a
ClassLabel); multi_label: a set of them per row (a list in JSONL / parquet, or a string split by
data.label_separator in CSV) -> sorted label ids (a sequence of ClassLabel); regression: numbers ->
float64. Names are sorted (integers numerically, strings alphabetically), so the same data always
maps to the same ids. A label the task cannot read is one line naming the row, split and column."""

import logging
import math
from typing import Any, List

from datasets import ClassLabel, DatasetDict, Sequence, Value

from sweep.errors import DataError

log = logging.getLogger(__name__)


def _label_set(value: Any, separator: str) -> List[Any]:
    """One multi_label cell as its labels: a list as it is, a string cut at the separator, a number alone."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(separator) if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def check_labels(parts: DatasetDict, data_cfg) -> None:
    """Every label the task cannot read, found before any row is dropped: the first is reported with
    its row (1 = the split's first row), split and column."""
    task, column = data_cfg.get("task", "single_label"), data_cfg.label_column
    if task == "single_label":
        return
    for name, ds in parts.items():
        for row, value in enumerate(ds["label"][:], start=1):
            if value is None:
                continue  # no label: dropped with the rows without one
            if task == "regression" and not _is_number(value):
                raise DataError(
                    f"row {row} of the {name} split holds {value!r} in label column {column!r}, not a number; "
                    f"data.task=regression needs a number in every row"
                )
            if task == "multi_label" and not _label_set(value, data_cfg.label_separator):
                raise DataError(
                    f"row {row} of the {name} split holds no label in label column {column!r} ({value!r}); "
                    f"data.task=multi_label needs at least one per row (separated by {data_cfg.label_separator!r})"
                )


def label_names(parts: DatasetDict, task: str = "single_label", separator: str = ",") -> List[str]:
    """The class (or label) names in a stable order: a ClassLabel's own names, else the sorted unique values."""
    feature = next(iter(parts.values())).features["label"]
    inner = getattr(feature, "feature", feature)  # a sequence's element (multi_label)
    if task == "multi_label" and isinstance(feature, ClassLabel):
        raise DataError("data.task=multi_label needs labels per row; the label column holds one class per row")
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if task == "single_label" and not (
        isinstance(feature, Value) and (feature.dtype.startswith("int") or feature.dtype in ("string", "large_string"))
    ):
        raise DataError(f"the label column holds {feature}; labels must be all integers or all strings")
    values = set()
    for ds in parts.values():
        column = ds["label"][:]
        if task == "multi_label":
            column = [label for cell in column for label in _label_set(cell, separator)]
        values.update(column)
    if task == "multi_label" and all(isinstance(v, str) and v.lstrip("-").isdigit() for v in values):
        values = {int(v) for v in values}  # ids written in a CSV string ("1,10,2"): ordered as numbers
    kinds = {type(v) for v in values}
    if len(kinds) > 1 or not (kinds <= {int} or kinds <= {str}):
        raise DataError(f"labels {sorted(map(repr, values))[:10]} mix types; use all integers or all strings")
    if len(values) < 2:
        what = "a multi-label classifier" if task == "multi_label" else "a classifier"
        raise DataError(f"the labels hold {len(values)} class(es) {sorted(values)}; {what} needs at least 2")
    return [str(v) for v in sorted(values)]


def encode_labels(parts: DatasetDict, data_cfg) -> DatasetDict:
    """Labels as the task learns them (class ids, sorted label ids per row, or numbers)."""
    task = data_cfg.get("task", "single_label")
    if task == "regression":
        return _numbers(parts)
    separator = data_cfg.get("label_separator", ",")
    names = label_names(parts, task, separator)
    feature = next(iter(parts.values())).features["label"]
    if isinstance(getattr(feature, "feature", feature), ClassLabel):
        return parts  # ids already, with their names (a hub dataset's ClassLabel)
    ids = {name: i for i, name in enumerate(names)}
    out = {}
    for name, ds in parts.items():
        if task == "multi_label":
            ds = ds.map(
                lambda b: {"label": [_ids(c, ids, separator) for c in b["label"]]},
                batched=True,
                desc=f"label ids {name}",
            )
            out[name] = ds.cast_column("label", Sequence(Value("int64"))).cast_column(
                "label", Sequence(ClassLabel(names=names))
            )
        else:
            ds = ds.map(lambda b: {"label": [ids[str(v)] for v in b["label"]]}, batched=True, desc=f"label ids {name}")
            out[name] = ds.cast_column("label", Value("int64")).cast_column("label", ClassLabel(names=names))
    log.info("labels: %s", ", ".join(f"{i} = {n}" for i, n in enumerate(names)))
    return DatasetDict(out)


def _ids(cell: Any, ids: dict, separator: str) -> List[int]:
    return sorted({ids[str(label)] for label in _label_set(cell, separator)})


def _numbers(parts: DatasetDict) -> DatasetDict:
    out = {}
    for name, ds in parts.items():
        if ds.features["label"] != Value("float64"):
            ds = ds.map(lambda b: {"label": [float(v) for v in b["label"]]}, batched=True, desc=f"label numbers {name}")
            ds = ds.cast_column("label", Value("float64"))
        out[name] = ds
    values = [v for ds in out.values() for v in ds["label"][:]]
    log.info(
        "regression target: %d rows, mean %.4g, from %.4g to %.4g",
        len(values),
        sum(values) / len(values),
        min(values),
        max(values),
    )
    if not all(math.isfinite(v) for v in values):
        raise DataError("the label column holds inf: data.task=regression needs finite numbers")
    return DatasetDict(out)
