"""Any labelled text data (data=text and its presets): local CSV / JSON Lines / parquet files or a hub
dataset -> the project's columns (text, optional text_pair, label as a ClassLabel) -> given splits."""

import logging
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, List, Optional

from datasets import Dataset, DatasetDict, Value, load_dataset

from sweep.errors import DataError

log = logging.getLogger(__name__)

# Builder of `datasets` per file extension: the same loaders the hub uses for these formats.
FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
# Split names as they appear in files and on the hub -> the project's split names.
SPLIT_ALIASES = {"train": "train", "validation": "valid", "valid": "valid", "dev": "valid", "test": "test"}
UNLABELLED = -1  # GLUE's label for test rows whose labels are withheld


def _format_of(path: Path) -> str:
    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"data file {str(path)!r} has an unknown format; use one of {', '.join(FORMATS)}")
    return builder


def read_data_file(path: Path, split: str) -> Dataset:
    """One data file through the `datasets` builder of its format. A file the builder cannot read
    (not text, broken quoting, not parquet) or one without rows is a DataError naming the file and,
    where the reader says it, where in it."""
    builder = _format_of(path)
    try:
        ds = load_dataset(builder, data_files={split: str(path)}, split=split)
    except Exception as error:
        if "corresponds to no data" in str(error):  # datasets' words for a file with no rows
            raise DataError(f"data file {str(path)!r} holds no rows; the {split} split needs some") from None
        cause = error.__cause__ or error  # datasets wraps the reader's own error in DatasetGenerationError
        said = " ".join(str(cause).split())  # one line, whatever the reader's message
        raise DataError(
            f"data file {str(path)!r} cannot be read as {builder}: {type(cause).__name__}: {said}"
        ) from None
    if len(ds) == 0:
        raise DataError(f"data file {str(path)!r} holds no rows; the {split} split needs some")
    return ds


def _load_files(files: Dict[str, Path]) -> DatasetDict:
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"data file(s) {missing} do not exist")
    for path in files.values():
        _format_of(path)  # every format checked before any file is read
    return DatasetDict({split: read_data_file(path, split) for split, path in files.items()})


def files_in_dir(local_dir: str) -> Dict[str, Path]:
    """train / validation (or valid, dev) / test files of a dir, found by name, any supported format."""
    directory = Path(local_dir).expanduser()
    if not directory.is_dir():
        raise DataError(
            f"data.local_dir={local_dir!r} does not exist; point it at a dir of train/validation/test files"
        )
    found: Dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.stem.lower() in SPLIT_ALIASES and path.suffix.lower() in FORMATS:
            if path.stem.lower() in found:
                raise DataError(f"data.local_dir={local_dir!r} holds two files for split {path.stem!r}; keep one")
            found[path.stem.lower()] = path
    if not found:
        raise DataError(
            f"data.local_dir={local_dir!r} holds no train/validation/test file; "
            f"name them e.g. train.csv, validation.jsonl, test.parquet"
        )
    return found


def load_hub(hub_id: str, hub_config: Optional[str]) -> DatasetDict:
    try:
        return load_dataset(hub_id, hub_config)
    except Exception as error:  # datasets raises several types for "not reachable / not cached"
        raise DataError(
            f"cannot load data.hub_id={hub_id!r} from the Hugging Face hub ({type(error).__name__}); "
            f"set data.local_dir=DIR or data.files={{train: a.csv, test: b.csv}} to read local files"
        ) from None


def load_given(data_cfg) -> DatasetDict:
    """The data's own splits under the project's names (train / valid / test)."""
    files = data_cfg.get("files")
    if files and not isinstance(files, Mapping):
        raise DataError(f"data.files={files!r} is not a mapping; use e.g. data.files={{train: a.csv, test: b.csv}}")
    if files:
        raw = _load_files({split: Path(str(path)).expanduser() for split, path in files.items()})
    elif data_cfg.local_dir:
        raw = _load_files(files_in_dir(data_cfg.local_dir))
    elif data_cfg.hub_id:
        raw = load_hub(data_cfg.hub_id, data_cfg.get("hub_config"))
        extra = [name for name in raw if name not in SPLIT_ALIASES]  # e.g. imdb's unlabelled "unsupervised"
        if extra:
            log.info("data.hub_id=%s: ignoring split(s) %s", data_cfg.hub_id, extra)
            raw = DatasetDict({name: ds for name, ds in raw.items() if name in SPLIT_ALIASES})
    else:
        raise DataError("data=text needs data.local_dir=DIR, data.files={train: a.csv, ...} or data.hub_id=ID")
    unknown = [name for name in raw if name not in SPLIT_ALIASES]
    if unknown:
        raise DataError(f"data.files names split(s) {unknown}; use {', '.join(SPLIT_ALIASES)}")
    return DatasetDict({SPLIT_ALIASES[name]: ds for name, ds in raw.items()})


def select_columns(parts: DatasetDict, data_cfg) -> DatasetDict:
    """text, optional text_pair and label, renamed from the configured columns."""
    wanted = {data_cfg.text_column: "text", data_cfg.label_column: "label"}
    if data_cfg.get("text_pair_column"):
        wanted[data_cfg.text_pair_column] = "text_pair"
    out = {}
    for name, ds in parts.items():
        absent = [column for column in wanted if column not in ds.column_names]
        if absent:
            raise DataError(
                f"{name} split lacks column(s) {absent}; found {ds.column_names}; "
                f"set data.text_column / data.label_column / data.text_pair_column"
            )
        ds = ds.select_columns(list(wanted)).rename_columns({k: v for k, v in wanted.items() if k != v})
        for column in ("text", "text_pair"):  # one string type, so splits from CSV and JSON files concatenate
            if column in ds.column_names and ds.features[column] != Value("string"):
                ds = ds.cast_column(column, Value("string"))
        out[name] = ds
    return DatasetDict(out)


def drop_unusable(parts: DatasetDict, task: str = "single_label") -> DatasetDict:
    """Rows that cannot train or score, dropped with a log line counting each reason: no label
    (None, or GLUE's -1 for withheld test labels: a class of -1, or a regression split whose every
    label is -1) and a text (or text pair) that is missing, empty or only whitespace. A split with no
    row left is dropped (sst2's and stsb's test splits)."""
    out = {}
    for name, ds in parts.items():
        columns = [c for c in ("text", "text_pair") if c in ds.column_names]
        # each column read whole ([:]: one arrow read), not row by row (a datasets Column iterates by rows)
        labels = ds["label"][:]
        withheld = UNLABELLED if task == "single_label" or all(v == UNLABELLED for v in labels) else None
        reasons = [_unusable(row, columns, withheld) for row in zip(labels, *(ds[c][:] for c in columns))]
        keep = [i for i, reason in enumerate(reasons) if reason is None]
        if len(keep) < len(ds):
            counts = Counter(reason for reason in reasons if reason is not None)
            said = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
            log.info("%s split: dropped %d of %d rows: %s", name, len(ds) - len(keep), len(ds), said)
            ds = ds.select(keep)
        if len(ds):
            out[name] = ds
    if not out:
        raise DataError("no split holds a row with a label and a text")
    return DatasetDict(out)


def _unusable(row: tuple, columns: List[str], withheld: Optional[int]) -> Optional[str]:
    label, *texts = row
    if label is None or (withheld is not None and label == withheld) or label != label:  # NaN: a blank number
        return "without a label"
    for column, text in zip(columns, texts):
        what = column.replace("_", " ")  # text, text pair
        if text is None:
            return f"with a missing {what}"
        if not text.strip():
            return f"with an empty {what}" if text == "" else f"with a whitespace-only {what}"
    return None


def load_text(data_cfg) -> DatasetDict:
    """The given splits, labelled, with project columns and a stable row index `idx` across splits."""
    from sweep.data.labels import check_labels, encode_labels

    parts = select_columns(load_given(data_cfg), data_cfg)
    check_labels(parts, data_cfg)  # a label the task cannot read is an error naming its row, not a dropped row
    parts = encode_labels(drop_unusable(parts, data_cfg.get("task", "single_label")), data_cfg)
    out, offset = {}, 0
    for name in ("train", "valid", "test"):
        if name in parts:
            out[name] = parts[name].add_column("idx", list(range(offset, offset + len(parts[name]))))
            offset += len(parts[name])
    return DatasetDict(out)
