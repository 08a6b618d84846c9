"""Rows -> splits: exact duplicates dropped, the stratified seeded 8:1:1 split (or the data's own
splits, a missing one carved from train), the debug caps. Data too small for a split by class is one
line naming the class counts and the smallest data that splits."""

import logging
import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from sweep.errors import DataError

log = logging.getLogger(__name__)


def drop_duplicates(ds: Dataset) -> Dataset:
    """Keep the first occurrence of each exact text (or text pair), so no example sits in two splits."""
    seen, keep = set(), []
    # [:]: the column read whole, not row by row
    texts = zip(ds["text"][:], ds["text_pair"][:]) if "text_pair" in ds.column_names else ds["text"][:]
    for i, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(i)
    dropped = len(ds) - len(keep)
    log.info("dedup: dropped %d exact-duplicate texts of %d rows", dropped, len(ds))
    return ds.select(keep) if dropped else ds


def split_dataset(ds: Dataset, fractions: Sequence[float], seed: int, task: str = "single_label") -> DatasetDict:
    """Stratified by label (multi_label: by label set), shuffled with the seed (the raw data is
    ordered by label); regression's numbers: seeded random. data.split's rule (three fractions above
    0 summing to 1) was checked with the config."""
    try:
        train, held_out, valid, test = _split_plan(strata(ds, task), fractions, seed, len(ds))
    except ValueError:  # datasets' stratifier: some class (or label set) too small for some split
        if task == "single_label":
            raise DataError(_too_small(ds, fractions)) from None
        log.info("multi_label: too few rows of each label set to split by it: a seeded random split")
        train, held_out, valid, test = _split_plan(None, fractions, seed, len(ds))
    held = ds.select(held_out)
    return DatasetDict(train=ds.select(train), valid=held.select(valid), test=held.select(test))


def _split_plan(labels: Optional[np.ndarray], fractions: Sequence[float], seed: int, n: int = 0):
    """The two cuts, stratified by labels (None: seeded random over n rows): (train, held-out) of all
    rows, then (valid, test) of the held-out ones."""
    _, valid_f, test_f = fractions
    train, held_out = _split_indices(labels, valid_f + test_f, seed, n)
    valid, test = _split_indices(
        labels[held_out] if labels is not None else None, test_f / (valid_f + test_f), seed, len(held_out)
    )
    return train, held_out, valid, test


MIN_SET_ROWS = 10  # multi_label: a label set on fewer rows joins the stratum of the rare sets


def strata(ds: Dataset, task: str) -> Optional[np.ndarray]:
    """What the split keeps in proportion: the class; the label set, the rare sets pooled; None
    (regression): nothing, a seeded random split."""
    if task == "regression":
        return None
    if task != "multi_label":
        return _labels(ds)
    sets = [tuple(sorted(set(labels))) for labels in ds["label"][:]]
    counts = Counter(sets)
    common = sorted(s for s, n in counts.items() if n >= MIN_SET_ROWS)
    ids = {s: i for i, s in enumerate(common)}
    rare = sum(n for s, n in counts.items() if s not in ids)
    if rare:
        log.info(
            "multi_label: %d rows of %d label sets seen fewer than %d times split as one stratum",
            rare,
            len(counts) - len(ids),
            MIN_SET_ROWS,
        )
    # the rare sets' stratum, itself too small to split: with the most common set's
    pooled = len(ids) if rare >= MIN_SET_ROWS or not common else ids[max(common, key=counts.get)]
    return np.array([ids.get(s, pooled) for s in sets])


def _class_counts(ds: Dataset) -> str:
    names = ds.features["label"].names
    return ", ".join(f"{name} {n}" for name, n in zip(names, np.bincount(_labels(ds), minlength=len(names))))


def _too_small(ds: Dataset, fractions: Sequence[float]) -> str:
    n_classes = ds.features["label"].num_classes
    per_class = next(  # the smallest balanced data the same cuts accept
        n for n in range(1, 100_000) if _splits(np.repeat(np.arange(n_classes), n), fractions)
    )
    return (
        f"{len(ds)} rows ({_class_counts(ds)}) are too few for a split by class with data.split={list(fractions)}: "
        f"every split needs each class; the smallest data that splits holds {per_class} rows of each class "
        f"({per_class * n_classes} rows)"
    )


def _splits(labels: np.ndarray, fractions: Sequence[float]) -> bool:
    try:
        _split_plan(labels, fractions, 0)
        return True
    except ValueError:
        return False


def _labels(ds: Dataset) -> np.ndarray:
    return ds.select_columns(["label"]).with_format("numpy")[:]["label"]  # one batch read


def _split_indices(labels: Optional[np.ndarray], test_size: float, seed: int, n: int = 0):
    """The same indices as Dataset.train_test_split(stratify_by_column="label", seed=seed), 8x
    faster: datasets reads the label column row by row there (4 s of a cold start on IMDB).
    labels None: a seeded random cut of n rows."""
    if labels is None:
        order = np.random.default_rng(seed).permutation(n)
        n_test = math.ceil(test_size * n)
        return order[n_test:], order[:n_test]
    n_test = math.ceil(test_size * len(labels))
    generator = stratified_shuffle_split_generate_indices(
        labels, len(labels) - n_test, n_test, rng=np.random.default_rng(seed)
    )
    return next(generator)


def cap(splits: DatasetDict, max_train: Optional[int], max_eval: Optional[int]) -> DatasetDict:
    """Debug caps; the splits are already shuffled, so the first rows are a fair sample."""
    limits = {"train": max_train, "valid": max_eval, "test": max_eval}
    return DatasetDict(
        {
            name: ds.select(range(min(limits[name], len(ds)))) if limits[name] is not None else ds
            for name, ds in splits.items()
        }
    )


def merged(parts: DatasetDict) -> Dataset:
    """Every given split of labelled text as one dataset (their idx already runs across them)."""
    return concatenate_datasets([parts[name] for name in parts])


def given_splits(parts: DatasetDict, split_seed: int, task: str = "single_label") -> Optional[DatasetDict]:
    """data.use_given_splits: the data's own train / valid / test. A missing valid or test split is
    carved from train (stratified, seeded) at the size of the other (sst2: its test labels are
    withheld, so its test is carved from train at the size of its validation split). None when the
    data has no train split or neither valid nor test: then all of it is merged and split 8:1:1."""
    if "train" not in parts or ("valid" not in parts and "test" not in parts):
        log.info("data.use_given_splits: only %s given, merging and splitting 8:1:1", sorted(parts))
        return None
    missing = "test" if "test" not in parts else "valid" if "valid" not in parts else None
    if missing:
        given, train = parts["valid" if missing == "test" else "test"], parts["train"]
        size = len(given) / len(train)
        try:
            keep, held_out = _split_indices(strata(train, task), size, split_seed, len(train))
        except ValueError:  # datasets' stratifier: some class (or label set) too small for some split
            if task == "single_label":
                raise DataError(
                    f"the train split ({len(train)} rows: {_class_counts(train)}) is too small to carve a {missing} "
                    f"split of {len(given)} rows from it by class; give a {missing} split or more rows of each class"
                ) from None
            log.info("multi_label: too few rows of each label set to carve by it: a seeded random %s split", missing)
            keep, held_out = _split_indices(None, size, split_seed, len(train))
        train, carved = train.select(keep), train.select(held_out)
        log.info("data.use_given_splits: no %s split given, carved %d rows from train", missing, len(carved))
        parts = DatasetDict({**parts, "train": train, missing: carved})
    return DatasetDict({name: parts[name] for name in ("train", "valid", "test")})
