"""Rows -> splits: exact duplicates dropped, the stratified seeded 8:1:1 split (or the data's own
splits, a missing one carved from train), the debug caps. Data too small for a split by class is one
line naming the class counts and the smallest data that splits."""

import logging
import math
from typing import Optional, Sequence

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from sweep.text_data import DataError

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


def split_dataset(ds: Dataset, fractions: Sequence[float], seed: int) -> DatasetDict:
    """Stratified by label, shuffled with the seed (the raw data is ordered by label); data.split's
    rule (three fractions above 0 summing to 1) was checked with the config."""
    try:
        train, held_out, valid, test = _split_plan(_labels(ds), fractions, seed)
    except ValueError:  # datasets' stratifier: some class too small for some split
        raise DataError(_too_small(ds, fractions)) from None
    held = ds.select(held_out)
    return DatasetDict(train=ds.select(train), valid=held.select(valid), test=held.select(test))


def _split_plan(labels: np.ndarray, fractions: Sequence[float], seed: int):
    """The two stratified cuts: (train, held-out) of all rows, then (valid, test) of the held-out ones."""
    _, valid_f, test_f = fractions
    train, held_out = _split_indices(labels, valid_f + test_f, seed)
    valid, test = _split_indices(labels[held_out], test_f / (valid_f + test_f), seed)
    return train, held_out, valid, test


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


def _split_indices(labels: np.ndarray, test_size: float, seed: int):
    """The same indices as Dataset.train_test_split(stratify_by_column="label", seed=seed), 8x
    faster: datasets reads the label column row by row there (4 s of a cold start on IMDB)."""
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


def given_splits(parts: DatasetDict, split_seed: int) -> Optional[DatasetDict]:
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
        try:
            keep, held_out = _split_indices(_labels(train), len(given) / len(train), split_seed)
        except ValueError:  # datasets' stratifier: some class too small for some split
            raise DataError(
                f"the train split ({len(train)} rows: {_class_counts(train)}) is too small to carve a {missing} split of "
                f"{len(given)} rows from it by class; give a {missing} split or more rows of each class"
            ) from None
        train, carved = train.select(keep), train.select(held_out)
        log.info("data.use_given_splits: no %s split given, carved %d rows from train", missing, len(carved))
        parts = DatasetDict({**parts, "train": train, missing: carved})
    return DatasetDict({name: parts[name] for name in ("train", "valid", "test")})
