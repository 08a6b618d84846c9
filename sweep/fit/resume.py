"""The resumable state of a run after a validation (each epoch's, or every trainer.eval_every_steps): what a killed, pre-empted or requeued job needs to
go on exactly where it stopped (weights, optimizer, schedule, grad scaler, random streams, the
history and the best validation so far, and where in which epoch it was), saved atomically and restored as one object.
It holds tensors and plain values only and is loaded with weights_only=True: a run dir may sit on
a shared file system, and unpickling a file planted there would run its code."""

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from sweep.rundir import atomic_path

log = logging.getLogger(__name__)


def rng_state(device: torch.device) -> Dict[str, Any]:
    """The random streams the run draws from: Python, numpy, torch's CPU generator, and the job's
    own GPU only (other visible GPUs are not this run's; a rerun may see fewer or others)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),  # a tuple of ints
        "numpy": [name, keys.tolist(), pos, has_gauss, cached_gaussian],  # no ndarray: the safe loader refuses them
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda_device" in state:
        torch.cuda.set_rng_state(state["cuda_device"], device)


@dataclass
class ResumeState:
    epoch: int = 0  # the epoch of the last validation (0: none yet)
    epoch_batches: Optional[int] = None  # micro-batches of that epoch trained by then (None: all of them)
    global_step: int = 0  # optimizer steps
    stale: int = 0  # validations since the best one (early stopping)
    history: List[Dict[str, Any]] = field(default_factory=list)
    best: Optional[Dict[str, Any]] = None  # the best validation's history row
    best_weights: Optional[Dict[str, torch.Tensor]] = None  # kept here only when best/ is not written
    training: Dict[str, Any] = field(default_factory=dict)  # model, optimizer, scheduler, scaler, rng

    def capture(self, model, optimizer, scheduler, scaler, device: torch.device) -> None:
        self.training = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(device),
            "scaler": scaler.state_dict() if scaler is not None else None,
        }

    def restore(self, model, optimizer, scheduler, scaler, device: torch.device) -> None:
        t = self.training
        model.load_state_dict(t["model"])
        optimizer.load_state_dict(t["optimizer"])
        scheduler.load_state_dict(t["scheduler"])
        if scaler is not None and t.get("scaler"):  # fp16: the loss scale it had reached, not 65536 again
            scaler.load_state_dict(t["scaler"])
        set_rng_state(t["rng"], device)

    def save(self, path: Path, fingerprint: str) -> None:
        with atomic_path(path) as tmp:
            torch.save({**self.__dict__, "config_hash": fingerprint}, tmp)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Optional["ResumeState"]:
        if not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle.UnpicklingError for anything that is not plain data, or a torn file
            log.warning("ignoring %s: unsafe or unreadable (%s), starting over", path, str(error).splitlines()[0][:200])
            return None
        if saved.pop("config_hash", None) != fingerprint:
            log.warning("ignoring %s: it was written by a different config", path)
            return None
        if "training" not in saved or "epoch_batches" not in saved:
            log.warning("ignoring %s: it was written by an older version of encoder-sweep", path)
            return None
        return cls(**saved)
