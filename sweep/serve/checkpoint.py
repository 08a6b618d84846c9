"""A run's saved classifier read back for serving, by predict.py, export.py and bench.py --inference
alike: classifier.json, the torch checkpoint, an ONNX export. Whatever is damaged or missing (a copy
cut short, a full disk during a sync) is one line naming the file and the reader's own reason, never a
traceback. Nothing here imports torch until the torch checkpoint is asked for."""

import json
from pathlib import Path
from typing import Any, Dict

from sweep.errors import CheckpointError, reason
from sweep.rundir import CLASSIFIER_FILE


def read_meta(directory: Path) -> Dict[str, Any]:
    """classifier.json of a best/ (or export) dir: max_len, truncation, task, label names..."""
    path = Path(directory) / CLASSIFIER_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{str(path)!r} does not load ({reason(error)})") from None


def load_checkpoint(directory: Path):
    """The classifier (fp32, eval) and its tokenizer."""
    from transformers.utils import logging as transformers_logging

    from sweep.model.classifier import Classifier, load_tokenizer

    transformers_logging.disable_progress_bar()  # "Loading weights" bars: the command's own lines are the ones to read
    try:
        return Classifier.from_pretrained(directory), load_tokenizer(str(directory))
    except Exception as error:
        raise CheckpointError(f"the checkpoint in {str(directory)!r} does not load ({reason(error)})") from None
