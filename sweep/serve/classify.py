"""Classifying new text with a run's best checkpoint (sweep/predict.py is the command): the texts read
from arguments, a text or table file or standard input; the run's own tokens kept (max_len,
data.truncation, pairs); torch on the GPU in bf16 where there is one, or the run's ONNX export in ONNX
Runtime (sweep/serve/onnx_runtime.py, without torch); one row per text with the label's name, its class
id and every class's probability, written as CSV or JSON Lines."""

import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from sweep.errors import PredictError, reason

TABLE_SUFFIXES = {".csv", ".jsonl", ".json", ".parquet"}
PROGRESS_MIN_BATCHES = 10  # a bar only where there is something to wait for


def checkpoint_dir(path: Path) -> Path:
    """The saved classifier: `path` itself or its best/."""
    from sweep.rundir import BEST_DIR, CLASSIFIER_FILE

    for candidate in (path / BEST_DIR, path):
        if (candidate / CLASSIFIER_FILE).is_file():
            return candidate
    if not path.exists():
        raise PredictError(f"no such run dir: {str(path)!r}")
    raise PredictError(
        f"{str(path)!r} holds no saved classifier (no {BEST_DIR}/{CLASSIFIER_FILE}); pass a run dir of a "
        f"completed run trained with trainer.save_best=true, or its best/ dir"
    )


def read_table_columns(path: Path, columns: Sequence[str]) -> List[List[str]]:
    import pandas as pd

    readers = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": lambda p: pd.read_json(p, lines=True),
    }
    try:
        table = readers[path.suffix.lower()](path)
    except (OSError, ValueError) as error:  # pandas' and pyarrow's parsers say what is wrong with the file
        raise PredictError(f"cannot read {str(path)!r} as {path.suffix.lower()[1:]}: {reason(error)}") from None
    for column, option in zip(columns, ("--text-column", "--pair-column")):
        if column not in table.columns:
            raise PredictError(
                f"{str(path)!r} has no column {column!r}; its columns are {list(table.columns)}; "
                f"name the column with {option}"
            )
    return [table[column].astype(str).tolist() for column in columns]


def non_empty_lines(read, where: str) -> List[str]:
    """The lines of a text that hold something; one line where it cannot be read (not UTF-8, no permission)."""
    try:
        return [line for line in read().splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise PredictError(f"cannot read {where} as UTF-8 text, one per line: {reason(error)}") from None


def read_texts(
    texts: Sequence[str], file: Optional[str], column: str, pair_column: Optional[str] = None
) -> Tuple[List[str], Optional[List[str]]]:
    """The texts to classify, from the arguments, a file or standard input, and the second text of
    each pair where pair_column names one (a table file only)."""
    if texts and file:
        raise PredictError("give texts as arguments or --file, not both")
    is_table = bool(file) and Path(file).suffix.lower() in TABLE_SUFFIXES
    if pair_column and not is_table:
        raise PredictError(
            f"--pair-column {pair_column!r} needs a table file (--file with a .csv, .jsonl or .parquet "
            f"name) holding both texts of each pair"
        )
    if texts:
        return list(texts), None
    pairs = None
    if file and file != "-":
        path = Path(file)
        if not path.is_file():
            raise PredictError(f"no such file: {file!r}")
        if is_table:
            found, *rest = read_table_columns(path, [column] + ([pair_column] if pair_column else []))
            pairs = rest[0] if rest else None
        else:  # plain text, one per line
            found = non_empty_lines(lambda: path.read_text(encoding="utf-8"), repr(file))
        where = repr(file)
    else:
        found = non_empty_lines(sys.stdin.read, "standard input")
        where = "standard input"
    if not found:
        raise PredictError(f"no texts to classify: {where} is empty")
    return found, pairs


def require_matching_input(meta: dict, directory: Path, pairs: Optional[List[str]]) -> None:
    """Single texts for a single-text classifier, pairs for one trained on pairs: the other way round
    it would classify inputs of a shape it never saw, without a word."""
    trained_on = meta.get("text_pair_column")
    if trained_on and pairs is None:
        raise PredictError(
            f"{str(directory)!r} was trained on sentence pairs (data.text_pair_column={trained_on!r}): give a "
            f"table file with --file, its first text's column with --text-column and its second's with --pair-column"
        )
    if pairs is not None and not trained_on:
        raise PredictError(f"{str(directory)!r} was trained on single texts, not pairs: drop --pair-column")


def encode(tokenizer, texts: List[str], pairs: Optional[List[str]], meta: dict) -> dict:
    """A batch's padded inputs, the tokens kept as the run kept them (classifier.json: max_len,
    truncation and, for chunks, its windows), as torch tensors."""
    import torch

    from sweep.data.truncation import keep_tokens
    from sweep.data.windows import cut_windows

    max_len = int(meta.get("max_len") or tokenizer.model_max_length)
    truncation = meta.get("truncation", "head")  # checkpoints from before data.truncation kept the head
    if pairs is not None or truncation == "head":
        return tokenizer(texts, pairs, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    if truncation != "chunks":  # the tail, or head and tail
        return tokenizer.pad(keep_tokens(tokenizer, texts, max_len, truncation), return_tensors="pt")
    windows = cut_windows(tokenizer, texts, max_len, int(meta.get("chunk_stride", 0)), int(meta["max_chunks"]))
    counts = torch.tensor([len(ids) for ids in windows["input_ids"]], dtype=torch.long)
    flat = {name: [window for text in lists for window in text] for name, lists in windows.items()}
    return {**tokenizer.pad(flat, return_tensors="pt"), "windows": counts}


def model_outputs(
    model, tokenizer, texts: List[str], pairs: Optional[List[str]], meta: dict, batch_size: int, device, precision
):
    """The head's outputs (logits) for each text (or pair) (n x outputs, float32 numpy), batch by batch;
    each batch is padded to its longest input, texts and pairs cut as in training (`meta`: the run's
    classifier.json)."""
    import torch
    from tqdm.auto import tqdm

    from sweep.model.classifier import encoder_input_names

    names = encoder_input_names(model.encoder, tokenizer) + ["windows"]
    starts = range(0, len(texts), batch_size)
    shown = None if len(starts) >= PROGRESS_MIN_BATCHES else True  # None: a bar where stderr is a terminal
    out = []
    with torch.inference_mode():
        for start in tqdm(starts, desc="predict", unit="batch", disable=shown, file=sys.stderr):
            batch_pairs = pairs[start : start + batch_size] if pairs is not None else None
            encoded = encode(tokenizer, texts[start : start + batch_size], batch_pairs, meta)
            inputs = {name: encoded[name].to(device) for name in names if name in encoded}
            with precision.autocast():
                logits = model(**inputs)
            out.append(logits.float().cpu())
    return torch.cat(out).numpy()


BACKENDS = ("torch", "onnx", "onnx-int8")  # onnx*: the export in best/onnx/ (sweep/export.py), without torch


def torch_outputs(directory: Path, meta: dict, texts, pairs, batch_size: int, device: str):
    from sweep.model.device import resolve_device, resolve_precision
    from sweep.serve.checkpoint import load_checkpoint

    torch_device = resolve_device(device)
    model, tokenizer = load_checkpoint(directory)
    model = model.to(torch_device)
    precision = resolve_precision("auto", torch_device)  # bf16 on cards that have it, fp32 on CPU
    return model_outputs(model, tokenizer, texts, pairs, meta, batch_size, torch_device, precision)


def onnx_outputs(directory: Path, backend: str, texts, pairs, batch_size: int):
    """The export's outputs, through ONNX Runtime on the CPU: no torch import on this path."""
    from sweep.rundir import EXPORT_FILE, read_json
    from sweep.serve.onnx_runtime import OnnxClassifier, export_dir

    onnx_dir = export_dir(directory, backend)
    failed = (read_json(onnx_dir / EXPORT_FILE) or {}).get("failed_check")
    if failed:
        print(f"predict.py: warning: this export failed its check against torch: {'; '.join(failed)}", file=sys.stderr)
    return OnnxClassifier(onnx_dir, backend).outputs(texts, pairs, batch_size)


def predict(
    run_dir: str,
    texts: List[str],
    batch_size: int = 64,
    device: str = "auto",
    pairs: Optional[List[str]] = None,
    backend: str = "torch",
):
    """A DataFrame per text (or pair), in input order, as the run's task reads its outputs
    (sweep/serve/readout.py): the label, the label set or the number, with the probabilities."""
    from sweep.serve.checkpoint import read_meta
    from sweep.serve.readout import read, table

    directory = checkpoint_dir(Path(run_dir))
    meta = read_meta(directory)
    require_matching_input(meta, directory, pairs)
    # shortest first, so each batch pads to a length near its texts' own; the rows go back in input order
    order = by_length(texts, pairs)
    texts = [texts[i] for i in order]
    pairs = [pairs[i] for i in order] if pairs is not None else None
    if backend == "torch":
        outputs = torch_outputs(directory, meta, texts, pairs, batch_size, device)
    else:
        outputs = onnx_outputs(directory, backend, texts, pairs, batch_size)
    restored = np.empty_like(outputs)
    restored[order] = outputs
    return table(read(restored, meta), meta)


def by_length(texts: List[str], pairs: Optional[List[str]]) -> np.ndarray:
    """The inputs' order by length in characters (a pair: both texts), a stable sort: characters track
    tokens closely enough to group texts of like length, without tokenizing twice."""
    lengths = [len(t) + (len(pairs[i]) if pairs is not None else 0) for i, t in enumerate(texts)]
    return np.argsort(lengths, kind="stable")


def write(table, out: Optional[str], fmt: Optional[str]) -> None:
    fmt = fmt or ("jsonl" if out and Path(out).suffix.lower() in (".jsonl", ".json") else "csv")
    text = table.to_csv(index=False) if fmt == "csv" else table.to_json(orient="records", lines=True)
    if not out:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text)
    except OSError as error:  # a missing dir, no permission, a full disk
        raise PredictError(f"cannot write --out {out!r}: {reason(error)}") from None
