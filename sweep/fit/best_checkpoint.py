"""Which checkpoint a run keeps: the validation with the best trainer.select_metric (sweep/config/metrics.py),
counted for early stopping, and its weights: best/ (a full checkpoint, written after the resumable
state) or, where best/ is not written or would be large to reload, the trained weights in the state."""

import logging
from typing import Any, Dict

import torch

from sweep.config.metrics import improves, select_metric
from sweep.model.classifier import Classifier
from sweep.rundir import BEST_DIR, CLASSIFIER_FILE, atomic_path, read_json

log = logging.getLogger(__name__)


def trained_copy(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The weights training changes (those that need gradients), copied to the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.named_parameters() if v.requires_grad}


def load_trained(module: torch.nn.Module, weights: Dict[str, torch.Tensor]) -> None:
    result = module.load_state_dict(weights, strict=False)
    trained = {k for k, v in module.named_parameters() if v.requires_grad}
    if result.unexpected_keys or trained & set(result.missing_keys):
        raise RuntimeError(f"the best weights do not fit the model: {result}")


def task_meta(task) -> Dict[str, Any]:
    """What best/classifier.json records of the task: its name, multi_label's threshold, regression's
    target mean and std (single_label records nothing: checkpoints from before tasks were that)."""
    if task.name == "multi_label":
        return {"task": task.name, "threshold": task.threshold}
    if task.name == "regression":
        return {"task": task.name, "target_mean": task.mean, "target_std": task.std}
    return {}


class BestCheckpoint:
    """trainer: the Trainer whose state, model and run dir it keeps the best of."""

    def __init__(self, trainer):
        self.trainer, cfg = trainer, trainer.cfg
        self.metric, self.save = select_metric(cfg.data.task, cfg.trainer.select_metric), cfg.trainer.save_best
        # the best weights in the state, where best/ is not written or where they are small
        # (a probe's head, LoRA's adapters: best/ holds LoRA's merged, which training cannot load back)
        self.in_state = not self.save or cfg.method.name != "finetune"

    def consider(self, row: Dict[str, Any]) -> bool:
        """Whether this validation is the best so far; keeps it (and its weights where they are kept
        in the state) and counts the validations since the best."""
        state = self.trainer.state
        improved = improves(self.metric, row[self.metric], state.best[self.metric] if state.best else None)
        if state.best is None or improved:  # the first validation is the best so far, even a NaN one
            state.best, state.stale = dict(row), 0
            if self.in_state:
                state.best_weights = trained_copy(self.trainer.trained)
            return True
        state.stale += 1
        return False

    def write(self, row: Dict[str, Any]) -> None:
        """best/ with the validation it holds, so that a resume can check it against the state's best."""
        trainer, cfg = self.trainer, self.trainer.cfg
        with atomic_path(trainer.run_dir / BEST_DIR, is_dir=True) as tmp:
            trainer.model.save_pretrained(
                tmp,
                trainer.prepared.tokenizer,
                max_len=cfg.data.max_len,
                truncation=cfg.data.truncation,  # predict.py keeps the same tokens
                **({"chunk_stride": cfg.data.chunk_stride} if cfg.data.truncation == "chunks" else {}),
                model_name=cfg.model.name,
                epoch=row["epoch"],
                step=row["step"],
                label_names=trainer.prepared.label_names,
                **task_meta(trainer.task),  # predict.py reads the outputs as the task does
                text_pair_column=cfg.data.get("text_pair_column"),  # predict.py asks for pairs where set
            )

    def reconcile(self) -> None:
        """After a restore: the state is saved before best/, so a crash in between leaves best/ behind
        the state's best validation (or missing), never ahead of it. The state's best is then the
        validation it was saved at, whose weights the model now holds: write them to best/."""
        if not self.save:
            return
        state = self.trainer.state
        meta = read_json(self.trainer.run_dir / BEST_DIR / CLASSIFIER_FILE)
        if meta is not None and "epoch" not in meta:
            return  # written before best/ recorded its epoch: nothing to check it against
        key = "step" if meta is None or "step" in meta else "epoch"  # best/ of older runs knew epochs only
        held, wanted = (meta or {}).get(key), state.best[key]
        if held == wanted:
            return
        if state.best["step"] == state.global_step:
            log.info(
                "best/ holds %s %s, not the best %s %s (a crash before it was written): writing it",
                key,
                held,
                key,
                wanted,
            )
            self.write(state.best)
        else:
            log.warning(
                "best/ holds %s %s, not the best %s %s, and its weights are gone; the test pass uses best/ as it is",
                key,
                held,
                key,
                wanted,
            )

    def load(self) -> None:
        """The best weights into the model, for the test pass (from the state, else from best/)."""
        trainer = self.trainer
        if trainer.state.best_weights is not None:
            load_trained(trainer.trained, trainer.state.best_weights)
        else:
            trainer.model.load_state_dict(Classifier.from_pretrained(trainer.run_dir / BEST_DIR).state_dict())
