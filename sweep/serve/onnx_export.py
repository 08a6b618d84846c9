"""The ONNX export of a run's best checkpoint (sweep/export.py is the command): the whole classifier
(the encoder, the run's pooling and its head, LoRA's merged weights as saved in best/) by torch.onnx's
exporter (torch.export, dynamo=True) with dynamic batch and sequence axes, fused for ONNX Runtime
(sweep/serve/onnx_fusion.py), quantized to int8 (sweep/serve/quantization.py), checked against torch on
the run's test rows (sweep/serve/export_check.py), written into best/onnx/ all at once with export.json:
the hash of the weights exported, the opset, the versions, the int8 settings with the CPU, the check."""

import hashlib
import logging
import os
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from sweep.errors import ExportError
from sweep.rundir import (
    BEST_DIR,
    CLASSIFIER_FILE,
    CONFIG_FILE,
    EXPORT_FILE,
    ONNX_DIR,
    ONNX_MODELS,
    atomic_path,
    read_json,
    write_json,
)
from sweep.serve.checkpoint import load_checkpoint, read_meta
from sweep.serve.export_check import check, figure, int8_missed, max_diff, remedy, shortfalls, test_headline
from sweep.serve.onnx_fusion import fuse_for_onnxruntime
from sweep.serve.onnx_runtime import INSTALL_HINT
from sweep.serve.quantization import quantize, require_kinds, settings

CHECK_ROWS = 1000
# torch.onnx's exporter writes opset 18 and later; older ones only through ONNX's version converter
MIN_OPSET = 18
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
EXPORTER = "torch.onnx.export(dynamo=True)"


@contextmanager
def errors_only(logger: str) -> Iterator[None]:
    """The named logger ("" the root) at ERROR for a library call's notes, then as it was: the process's
    later warnings (a caller's, its next run's) still show."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        target.setLevel(level)


def locate(path: Path) -> Tuple[Path, Path]:
    """(run dir, its best/) for a run dir or a best/ dir; one line when there is no best/ to export."""
    if (path / CLASSIFIER_FILE).is_file():
        return path.parent, path
    if not path.is_dir():
        raise ExportError(f"no such run dir: {str(path)!r}")
    if not (path / BEST_DIR / CLASSIFIER_FILE).is_file():
        status = (read_json(path / "metrics.json") or {}).get("status", "unknown: no metrics.json")
        raise ExportError(
            f"{str(path)!r} has no {BEST_DIR}/{CLASSIFIER_FILE} to export (status: {status}); export a run "
            f"that saved its best checkpoint (a completed run, trainer.save_best=true)"
        )
    return path, path / BEST_DIR


def require_exporter(opset: Optional[int]) -> None:
    """The onnx extra is installed and the opset is one the exporter writes."""
    for package in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise ExportError(f"exporting needs {package}, which is not installed: {INSTALL_HINT}") from None
    import onnx

    highest = onnx.defs.onnx_opset_version()
    if opset is not None and not MIN_OPSET <= opset <= highest:
        raise ExportError(
            f"--opset {opset}: the exporter writes opsets {MIN_OPSET} to {highest} (onnx {onnx.__version__})"
        )


def require_one_sequence(best: Path, meta: Dict[str, Any]) -> None:
    """The graph takes one sequence per text: a run that reads a text as windows is served by torch."""
    if meta.get("truncation") == "chunks":
        raise ExportError(
            f"{str(best)!r} reads each text as up to {meta.get('max_chunks')} windows (data.truncation=chunks) and "
            f"pools them, which the exported graph (one sequence per text) does not do; serve it with "
            f"predict.py --backend torch"
        )


def require_writable(best: Path) -> None:
    if not os.access(best, os.W_OK):
        raise ExportError(
            f"cannot write {best / ONNX_DIR}: {str(best)!r} is read-only; export a writable copy of the run dir"
        )


def test_rows(run_dir: Path, rows: int) -> Tuple[List[str], Optional[List[str]], List[int]]:
    """Texts, second texts of pairs (or None) and labels of the first `rows` of the run's test split,
    rebuilt from its .hydra/config.yaml as training built it."""
    from datasets.utils.logging import disable_progress_bar
    from omegaconf import OmegaConf

    from sweep.data.sources import prepare_splits

    disable_progress_bar()  # the export's own lines are what to read

    try:
        cfg = OmegaConf.load(run_dir / CONFIG_FILE)
        test = prepare_splits(cfg.data)["test"]
    except Exception as error:
        raise ExportError(
            f"cannot rebuild the test rows of {str(run_dir)!r} to check the export on them "
            f"({type(error).__name__}: {error}); the run's data must be readable here"
        ) from None
    test = test.select(range(min(rows, len(test))))
    pairs = list(test["text_pair"]) if "text_pair" in test.column_names else None
    return list(test["text"]), pairs, list(test["label"])


def positional(model, names: List[str]):
    """The classifier with its inputs by position: the exporter's dynamic shapes and ONNX's input
    names are given by position, the classifier takes them by name."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs)))

    return Positional().eval()


def write_graph(model, tokenizer, names: List[str], texts: List[str], meta: Dict[str, Any], path: Path, opset):
    """The fp32 graph, traced on two test rows padded to the run's max_len (the longest shape it meets)."""
    import torch

    example = tokenizer(
        texts[:2], truncation=True, max_length=meta["max_len"], padding="max_length", return_tensors="pt"
    )
    from sweep.model.classifier import max_positions

    # the longest sequence the position table takes: an unbounded axis fails torch.export's guards, and
    # the exporter then retries slower strategies
    longest = max_positions(model.encoder.config, tokenizer)
    sequence = torch.export.Dim("sequence", max=longest) if longest else torch.export.Dim("sequence")
    dims = tuple({0: torch.export.Dim("batch"), 1: sequence} for _ in names)
    try:
        with warnings.catch_warnings(), errors_only("torch.onnx"):
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's to act on
            torch.onnx.export(
                positional(model, names),
                tuple(example[name] for name in names),
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_shapes=(dims,),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
    except Exception as error:
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise ExportError(f"torch.onnx could not export this classifier ({type(error).__name__}: {first})") from None


def weights_hash(best: Path) -> str:
    """sha256 over best/'s weight files (encoder and head), in name order: which checkpoint was exported."""
    digest = hashlib.sha256()
    for path in sorted(best.glob("*.safetensors")):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def versions() -> Dict[str, str]:
    from importlib.metadata import version

    return {package: version(package) for package in ("torch", "transformers", "onnx", "onnxruntime", "onnxscript")}


def describe(best: Path, tmp: Path, names: List[str], tokenizer, meta: Dict[str, Any], backends) -> Dict[str, Any]:
    """export.json less the check: what was exported, from what, by what."""
    import onnx

    graph = onnx.load(str(tmp / ONNX_MODELS["onnx"]), load_external_data=False)
    return {
        "source": {"best_dir": str(best.resolve()), "weights_sha256": weights_hash(best), "epoch": meta.get("epoch")},
        "exporter": EXPORTER,
        "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        "models": {backend: ONNX_MODELS[backend] for backend in backends},
        "inputs": names,
        "pad_token_id": tokenizer.pad_token_id,
        "max_len": meta["max_len"],
        "truncation": meta.get("truncation", "head"),
        "versions": versions(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def export(
    path: Path, int8: bool = False, opset: Optional[int] = None, rows: int = CHECK_ROWS, keep_fp32: Sequence[str] = ()
) -> Dict[str, Any]:
    """Writes best/onnx/ (all of it, or nothing on an error) and returns its export.json.
    keep_fp32: layer kinds whose weights stay fp32 in the int8 model (what the check names when int8 misses)."""
    from sweep.model.classifier import encoder_input_names
    from sweep.serve.model_card import write_model_card

    run_dir, best = locate(Path(path))
    meta = read_meta(best)
    require_one_sequence(best, meta)
    require_exporter(opset)
    require_writable(best)
    model, tokenizer = load_checkpoint(best)
    require_kinds(model, keep_fp32)
    checked_rows = test_rows(run_dir, rows)
    names = encoder_input_names(model.encoder, tokenizer)
    backends = ["onnx", "onnx-int8"] if int8 else ["onnx"]
    with atomic_path(best / ONNX_DIR, is_dir=True) as tmp:
        write_graph(model, tokenizer, names, checked_rows[0], meta, tmp / ONNX_MODELS["onnx"], opset)
        fusions = fuse_for_onnxruntime(tmp / ONNX_MODELS["onnx"])  # int8 quantizes the fused graph
        if int8:
            with errors_only(""):  # the quantizer's pre-processing advice, on the root logger
                quantize(tmp / ONNX_MODELS["onnx"], tmp / ONNX_MODELS["onnx-int8"], keep_fp32)
        for name in (*TOKENIZER_FILES, CLASSIFIER_FILE):
            if (best / name).is_file():
                shutil.copy2(best / name, tmp / name)
        record = {**describe(best, tmp, names, tokenizer, meta, backends), "fusions": fusions}
        if int8:
            record["int8"] = settings(keep_fp32)
        write_json(tmp / EXPORT_FILE, record)  # the runtime reads its inputs' padding from it
        record["check"], reference = check(model, tokenizer, meta, tmp, backends, checked_rows)
        if int8_missed(record["check"]):  # which layer kinds kept fp32 would meet it
            with errors_only(""):
                record["int8"]["remedy"] = remedy(tmp, keep_fp32, checked_rows, reference, meta)
        record["failed_check"] = shortfalls(record["check"], record.get("int8", {}).get("remedy"))
        write_json(tmp / EXPORT_FILE, record)
    write_model_card(run_dir)  # the card lists the export and its agreement
    return record


def summary(best: Path, record: Dict[str, Any]) -> str:
    checked = record["check"]
    headline = test_headline(checked.get("task", "single_label"))
    lines = [f"exported {best / ONNX_DIR}: {', '.join(record['models'].values())} (opset {record['opset']})"]
    lines.append(f"checked on {checked['rows']:,} test rows against torch ({figure(headline, checked['torch'])}):")
    for backend in record["models"]:
        found = checked[backend]
        lines.append(
            f"  {backend}: {checked.get('answers', 'labels')} agree {found['agreement']:.2%}, "
            f"max diff {max_diff(found):.1e}, {figure(headline, found)}, {found['samples_per_s']:.0f} samples/s "
            f"(torch {checked['torch']['samples_per_s']:.0f}; batch {checked['batch_size']}, {checked['threads']} threads)"
        )
    return "\n".join(lines)
