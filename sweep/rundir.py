"""The run-directory contract: what every job leaves in its Hydra output dir, and what the report
(sweep/report/, run as sweep/collect.py), resume, predict.py and users rely on. This module is its one statement; nothing
else restates a file name, a status or a metrics.json field. It imports neither torch nor Hydra, so
the report and Hydra's callbacks stay light.

    RUN_DIR/
      .hydra/                    config.yaml, overrides.yaml, hydra.yaml: Hydra's record of what ran
      metrics.json               flat final values (METRICS_FIELDS), rewritten as the job goes; `status` says how far
      history.csv                one row per validation: each epoch's, or every trainer.eval_every_steps (HISTORY_COLUMNS)
      predictions_test.parquet   per test example: index, label, pred, prob_<i> per class (+ prob_pos for two classes);
                                 multi_label: label and pred as lists of label ids, prob_<i> per label;
                                 regression: label and pred as numbers (sweep/model/tasks.py, columns)
      best/                      the best checkpoint: the encoder (save_pretrained, safetensors), its tokenizer,
                                 head.safetensors and classifier.json (family, pooling, num_labels, max_len, epoch,
                                 label names); sweep.model.classifier.Classifier.from_pretrained(best) loads it;
                                 method=lora: the encoder with its adapters merged, and adapter/ (peft's format);
                                 README.md: the model card (sweep/serve/model_card.py), written when the run completes
      best/onnx/                 sweep/export.py: model.onnx (fp32), model_int8.onnx (--quantize int8), the
                                 tokenizer files, classifier.json and export.json (its check against torch)
      resume_state.pt            the resumable state after the last epoch (tensors and plain values only, loaded
                                 with weights_only=True); deleted when the run completes
      wandb_id, wandb/           the run's wandb id (kept across restarts) and the wandb run files
      train.log                  the job's log
    SWEEP_DIR/multirun.yaml      Hydra's record of the sweep (the jobs it asked for)
    SWEEP_DIR/tune.journal       hydra/sweeper=tune: the cells' Optuna studies (sweep/launch/tune.py); each trial is a
                                 run dir CELL,trial=K whose metrics.json names its `trial`

Every file is written atomically (a temp name in the same dir, then one rename): a killed job never
leaves a half-written file that looks complete, and a write the file system refuses (a full disk)
raises WriteError naming the file, with every earlier file intact. Values are read from metrics.json and
.hydra/config.yaml, never parsed out of directory names.
"""

import csv
import enum
import json
import math
import os
import shutil
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from sweep.errors import WriteError

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions_test.parquet"
BEST_DIR = "best"
CLASSIFIER_FILE = "classifier.json"  # in best/: what Classifier.from_pretrained needs beside the weights
HEAD_FILE = "head.safetensors"  # in best/: the pooling's and the head's weights
ADAPTER_DIR = "adapter"  # in best/ of a method=lora run: the adapters alone (peft's save_pretrained)
MODEL_CARD_FILE = "README.md"  # in best/: the model card, in the Hugging Face hub's layout
ONNX_DIR = "onnx"  # in best/: the exported classifier, all that serving it needs
ONNX_MODELS = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}  # in best/onnx/, by predict.py's --backend
EXPORT_FILE = "export.json"  # in best/onnx/: the source's hash, the versions, the check against torch
STATE_FILE = "resume_state.pt"
WANDB_ID_FILE = "wandb_id"
WANDB_DIR = "wandb"  # the wandb run files (wandb.init(dir=RUN_DIR) names it)
MLFLOW_ID_FILE = "mlflow_id"  # the MLflow run of this run dir, continued when the job resumes
TENSORBOARD_DIR = "tensorboard"  # TensorBoard's event files: scalars and the hparams record
LOG_FILE = "train.log"
HYDRA_DIR = ".hydra"
CONFIG_FILE = f"{HYDRA_DIR}/config.yaml"
OVERRIDES_FILE = f"{HYDRA_DIR}/overrides.yaml"
MULTIRUN_FILE = "multirun.yaml"  # in the sweep dir, not the run dir
TUNE_JOURNAL = "tune.journal"  # in the sweep dir of a hydra/sweeper=tune sweep


class Status(str, enum.Enum):
    """metrics.json's `status`: a str, so it is written and compared as the plain word."""

    RUNNING = "running"  # started; or killed without a chance to write more (SIGKILL, a lost node)
    COMPLETED = "completed"  # tested on the best checkpoint; every field below is final
    FAILED = "failed"  # an error ended it; `error` says which
    INTERRUPTED = "interrupted"  # SIGTERM or Ctrl-C; rerunning the same command resumes it
    PRUNED = "pruned"  # a tune trial its pruner stopped after an epoch: history and best valid figures, no test

    def __str__(self) -> str:
        return self.value


# metrics.json's fields, in the order a job writes them, each with its meaning
METRICS_FIELDS: Dict[str, str] = {
    "model": "model.name: the encoder's short name",
    "pooling": "pooling.name: how token states become one vector",
    "method": "method.name: the training regime (finetune, frozen, lora)",
    "seed": "the run's seed",
    "status": "a Status",
    "trial": "hydra/sweeper=tune: the trial this run is, 'STUDY#NUMBER' (STUDY: its cell); absent otherwise",
    "config_hash": "fingerprint of the config minus rerun-neutral keys: a rerun with the same hash is the same run",
    "params": "weights of encoder, pooling and head, including those the forward never uses (BERT's pooler)",
    "trainable_params": "the weights training changes (all for finetune; pooling and head for frozen; + adapters for lora)",
    "device": "where it trained: cpu, cuda, cuda:N",
    "precision": "the precision that ran: fp32, bf16, fp16",
    "train_samples": "rows in the train split (after data.max_train_samples)",
    "valid_samples": "rows in the validation split",
    "test_samples": "rows in the test split",
    "task": "data.task: single_label, multi_label or regression (its metrics below: sweep/config/metrics.py TASK_METRICS)",
    "effective_batch_size": "rows per optimizer step: trainer.batch_size x trainer.grad_accum_steps",
    "select_metric": "the validation metric that chose the best checkpoint (trainer.select_metric)",
    "class_weights": "optim.class_weights=balanced: the cross-entropy's weight of each class id; absent otherwise",
    "feature_cache": "method=frozen on cached vectors: hit (read) or miss (encoded by this run); absent otherwise",
    "feature_seconds": "seconds this run spent on those vectors (encoding and writing, or reading); in train_seconds",
    **{
        f"data/{split}_{figure}": meaning.format(split=split)
        for split in ("train", "valid", "test")
        for figure, meaning in {
            "tokens_p50": "median length of the {split} texts in the run's tokens (special tokens included)",
            "tokens_p90": "90th percentile of the {split} texts' lengths in tokens",
            "tokens_p99": "99th percentile of the {split} texts' lengths in tokens",
            "tokens_max": "the longest {split} text in tokens",
            "cut_frac": "share of the {split} texts longer than the run reads (max_len, or max_chunks windows)",
        }.items()
    },
    "compile_mode": "torch.compile mode asked for and set up (null: eager)",
    "compile_seconds": "seconds spent compiling every shape before training (null: not compiled)",
    "compile_error": "why compiling failed and the run fell back to eager (null: it did not)",
    "compiled": "true only if nothing ran eagerly after the warm-up",
    "recompiles": "frames compiled after the warm-up (null: not compiled)",
    "graph_breaks": "graph breaks during the warm-up (null: not compiled)",
    "best_epoch": "the epoch of the best validation (by select_metric), whose checkpoint was tested; fractional mid-epoch",
    "best_step": "the optimizer step of that validation",
    "epochs_run": "epochs trained (fewer than trainer.epochs after an early stop; fractional where it stopped mid-epoch)",
    "optimizer_steps": "optimizer steps taken (each of effective_batch_size rows)",
    "train/acc": "the best validation's running accuracy over the batches before it (dropout on, weights moving)",
    "train/loss": "the best validation's mean training loss over the batches since the one before",
    "valid/acc": "the best validation's accuracy",
    "valid/loss": "the best validation's loss",
    "valid/macro_f1": "the best validation's macro-F1 (multi_label: over labels)",
    "valid/micro_f1": "multi_label: the best validation's micro-F1 (every label decision pooled)",
    "valid/subset_acc": "multi_label: the best validation's share of rows with every label right",
    "valid/pearson": "regression: the best validation's Pearson correlation of prediction and target",
    "valid/spearman": "regression: the best validation's Spearman (rank) correlation",
    "valid/mse": "regression: the best validation's mean squared error, in the target's units",
    "test/acc": "test accuracy of the best checkpoint (single_label)",
    "test/f1": "test F1 of the positive class (label 1); null with more than two classes",
    "test/macro_f1": "mean test F1 over the classes present",
    "test/loss": "test loss of the best checkpoint (regression: on the standardized target)",
    "test/micro_f1": "multi_label: test micro-F1 at trainer.threshold",
    "test/subset_acc": "multi_label: share of test rows with every label right (exact match)",
    "test/pearson": "regression: test Pearson correlation",
    "test/spearman": "regression: test Spearman (rank) correlation",
    "test/mse": "regression: test mean squared error, in the target's units",
    "train_seconds": "seconds in the training epochs (batches, forward, backward, steps), summed, + feature_seconds",
    "train_samples_per_s": "training samples per second of train_seconds",
    "test_samples_per_s": "test-pass throughput at data.eval_batch_size, the warm-up batch left out",
    "peak_memory_mib": "peak memory of the test pass in MiB (2^20 bytes), of the kind below",
    "peak_memory_kind": "cuda_allocated, host_rss, or host_rss_process_lifetime (the peak could not be reset)",
    "pruned": "a pruned trial: after which validation, at what select metric, by which pruner; absent otherwise",
    "error": "'Type: message' of what ended a failed or interrupted run; null when it completed or was pruned",
}
# the only fields that differ between two identical runs
TIMING_FIELDS = (
    "train_seconds",
    "train_samples_per_s",
    "test_samples_per_s",
    "peak_memory_mib",
    "compile_seconds",
    "feature_seconds",
)

# the class names of the project's binary data sets (IMDB, generated reviews); checkpoints saved
# before best/classifier.json recorded label_names are labelled with them
LABEL_NAMES = ["neg", "pos"]

# train/* cover the batches since the previous row; train/grad_norm (their mean norm before clipping)
# only under trainer.max_grad_norm; epoch is fractional for a row in the middle of an epoch. These are
# a single-label run's; the others have no train/acc (regression) and their task's valid/* figures
# (sweep/config/metrics.py TASK_METRICS)
HISTORY_COLUMNS = (
    "epoch",
    "step",
    "train/loss",
    "train/acc",
    "train/grad_norm",
    "valid/loss",
    "valid/acc",
    "valid/macro_f1",
    "seconds",
    "samples",
    "lr",
)

FULL_DISK_BYTES = 1 << 20  # less free space than this after a failed write: the disk is full
_UMASK = os.umask(0)
os.umask(_UMASK)


# ---------------------------------------------------------------- writers


@contextmanager
def atomic_path(target: Path, is_dir: bool = False) -> Iterator[Path]:
    """Yields a temp path next to target; on success it replaces target in one rename. A write
    that fails on the file system (a full disk, no permission) raises WriteError naming target."""
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            os.close(fd)
            tmp = Path(name)
        yield tmp
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_UMASK)  # mkstemp/mkdtemp create private files
        if is_dir and target.exists():
            # a directory cannot be replaced in one rename: move the old one aside first
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except Exception as error:
        reason = _write_failure(error, target.parent)
        if reason is None:
            raise
        # the failed writer's frames (down the chain of errors it raised) hold its open file, which
        # holds the temp file's space after its removal below: freed, so the failure can be recorded
        failed = error
        while failed is not None:
            traceback.clear_frames(failed.__traceback__)
            failed = failed.__context__
        raise WriteError(f"cannot write {target}: {reason}; the files written before it are intact") from error
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if is_dir else tmp.unlink()


def _write_failure(error: Exception, directory: Path) -> Optional[str]:
    """Why a write failed, where the file system refused it; None for any other error. torch.save
    and safetensors report a full disk in their own words (RuntimeError "unexpected pos ...",
    SafetensorError), so a full disk is also read from the disk itself."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    try:
        full = shutil.disk_usage(directory).free < FULL_DISK_BYTES
    except OSError:
        full = False
    return f"no space left on device ({type(error).__name__}: {error})" if full else None


def _finite_or_null(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(path: Path, data: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({k: _finite_or_null(v) for k, v in data.items()}, indent=2) + "\n")


class MetricsRecord:
    """A job's metrics.json: every update is checked against METRICS_FIELDS and written at once, so
    the file always says how far the job got."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.values: Dict[str, Any] = {}

    def update(self, values: Dict[str, Any]) -> None:
        unknown = sorted(set(values) - set(METRICS_FIELDS))
        if unknown:
            raise KeyError(f"not metrics.json fields (sweep/rundir.py METRICS_FIELDS): {unknown}")
        self.values.update(values)
        write_json(self.path, self.values)


def write_history(run_dir: Path, rows: List[Dict[str, Any]]) -> None:
    import pandas as pd  # here, not at the top: the report reads run dirs without pandas' import cost

    with atomic_path(Path(run_dir) / HISTORY_FILE) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_predictions(run_dir: Path, columns: Dict[str, Any]) -> None:
    import pandas as pd

    with atomic_path(Path(run_dir) / PREDICTIONS_FILE) as tmp:
        pd.DataFrame(columns).to_parquet(tmp, index=False)


# ---------------------------------------------------------------- readers


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object at path; None if it is missing or not JSON (a file of an older layout)."""
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_metrics(run_dir: Path) -> Dict[str, Any]:
    """metrics.json; raises FileNotFoundError (the job never started) or ValueError (unreadable)."""
    return json.loads((Path(run_dir) / METRICS_FILE).read_text())


def read_history(run_dir: Path) -> Dict[str, List[float]]:
    """history.csv as {column: values}; {} if it is missing or half-written (the run draws no curve)."""
    try:
        with open(Path(run_dir) / HISTORY_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
        return {key: [float(row[key] or "nan") for row in rows] for key in (rows[0] if rows else {})}
    except (OSError, ValueError, TypeError):
        return {}


def read_yaml(path: Path) -> Any:
    import yaml

    with open(path) as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / HYDRA_DIR).is_dir() or (Path(path) / METRICS_FILE).is_file()


def keep_tracker_id(path: Path, run_id: str) -> None:
    """A tracker's run id in the run dir (wandb_id, mlflow_id), written atomically: the job continues
    that run when it resumes."""
    with atomic_path(path) as tmp:
        tmp.write_text(run_id + "\n")
