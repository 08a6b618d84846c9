"""An exported classifier (RUN_DIR/best/onnx/, written by sweep/export.py) run by ONNX Runtime: its
tokenizer.json read by `tokenizers`, numpy arrays in and out. Nothing here imports torch, so a
server (or predict.py --backend onnx) starts without torch's import time and memory."""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from sweep.data.truncation import keep_tokens
from sweep.errors import CheckpointError, OnnxUnavailable, reason
from sweep.rundir import EXPORT_FILE, ONNX_DIR, ONNX_MODELS
from sweep.serve.checkpoint import read_meta
from sweep.serve.quantization import cpu_features

INSTALL_HINT = 'pip install -e ".[onnx]"'  # the extra that pins onnx, onnxruntime and onnxscript
TOKENIZER_FILE = "tokenizer.json"

log = logging.getLogger(__name__)


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise OnnxUnavailable(f"the onnx backends need ONNX Runtime, which is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def export_dir(best: Path, backend: str) -> Path:
    """best/onnx/, holding the model of `backend`; one line saying how to export it when it does not."""
    directory = Path(best) / ONNX_DIR
    if not (directory / ONNX_MODELS[backend]).is_file():
        run_dir = Path(best).parent
        flag = " --quantize int8" if backend == "onnx-int8" else ""
        raise OnnxUnavailable(
            f"{str(best)!r} has no {ONNX_DIR}/{ONNX_MODELS[backend]} for --backend {backend}: export it first with "
            f"`encoder-sweep-export {run_dir}{flag}`"
        )
    return directory


class OnnxClassifier:
    """The classifier of an export dir: outputs(texts) as predict.py's torch path computes them, with
    the same tokens kept (the run's max_len and data.truncation, pairs joined)."""

    def __init__(self, directory: Path, backend: str = "onnx", threads: Optional[int] = None):
        from tokenizers import Tokenizer

        ort = import_onnxruntime()
        directory = Path(directory)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        model = str(directory / ONNX_MODELS[backend])
        try:  # a damaged model, export.json or tokenizer: one line, as predict.py's torch path says it
            self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            record = json.loads((directory / EXPORT_FILE).read_text())
            self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        except Exception as error:
            raise CheckpointError(f"the export in {str(directory)!r} does not load ({reason(error)})") from None
        self.input_names = [node.name for node in self.session.get_inputs()]
        meta = read_meta(directory)
        self.max_len, self.truncation = int(meta["max_len"]), meta.get("truncation", "head")
        self.pad_id = record["pad_token_id"]
        if backend == "onnx-int8" and "int8" not in record and cpu_features()["vnni"] is False:
            log.warning(  # exported before 7-bit weights (sweep/serve/quantization.py): its check may not hold here
                "%s has 8-bit weights, whose int8 sums can saturate on this CPU (no VNNI): its agreement with torch may "
                "be lower here than its check says; export it again for 7-bit weights, which hold on every CPU",
                model,
            )

    def encode(self, texts: List[str], pairs: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
        """Token ids, type ids and the mask, padded to the batch's longest, as int64 arrays."""
        tokenizer = self.tokenizer
        if pairs is None and self.truncation != "head":  # the tail, or head and tail: as the run kept them
            encoded = keep_tokens(tokenizer, texts, self.max_len, self.truncation)
            rows = list(zip(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"]))
        else:  # what a transformers fast tokenizer does with truncation=True, max_length, padding=True
            tokenizer.no_padding()
            tokenizer.enable_truncation(self.max_len, strategy="longest_first", direction="right")
            batch = tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else texts)
            rows = [(e.ids, e.type_ids, e.attention_mask) for e in batch]
        width = max(len(ids) for ids, _, _ in rows)
        arrays = {name: np.zeros((len(rows), width), dtype=np.int64) for name in ("token_type_ids", "attention_mask")}
        arrays["input_ids"] = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            for name, values in zip(("input_ids", "token_type_ids", "attention_mask"), row):
                arrays[name][i, : len(values)] = values
        return {name: arrays[name] for name in self.input_names}

    def outputs(self, texts: List[str], pairs: Optional[List[str]] = None, batch_size: int = 32) -> np.ndarray:
        """The head's outputs (logits) for each text (or pair): n x outputs, float32; the run's task
        reads them (sweep/serve/readout.py)."""
        out = []
        for start in range(0, len(texts), batch_size):
            batch_pairs = pairs[start : start + batch_size] if pairs is not None else None
            (logits,) = self.session.run(None, self.encode(texts[start : start + batch_size], batch_pairs))
            out.append(logits.astype(np.float32))
        return np.concatenate(out)
