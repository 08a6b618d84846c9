"""One job's share of the machine: its torch threads on CPU and, on a multi-GPU machine, a GPU of
its own. Parallel jobs (joblib) must not fight over cores or land two on one GPU."""
import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)


def default_n_jobs() -> int:
    """Parallel jobs on one machine: one per GPU where there are GPUs, else 2."""
    return torch.cuda.device_count() or 2


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_threads(threads: Optional[int], launcher) -> Optional[int]:
    """Torch threads for one job: trainer.threads if set; else an equal share of the cores when
    joblib runs n_jobs side by side (its loky workers would start with 1); else the cores a
    submitit job asked for; else None (torch's default, all cores)."""
    if threads:
        return threads
    n_jobs = launcher.get("n_jobs")
    if n_jobs:
        return max(1, available_cores() // n_jobs) if n_jobs > 0 else 1
    return launcher.get("cpus_per_task")


def set_threads(threads: Optional[int]) -> None:
    if threads:
        torch.set_num_threads(threads)
    log.info("torch threads: %d (%d cores)", torch.get_num_threads(), available_cores())


class GpuClaim:
    """Holds an exclusive lock on one GPU for the life of a job: first choice the job number
    modulo the GPU count, else the next free one, so two jobs never share a GPU."""

    def __init__(self, job_num: int, lock_dir: Optional[Path] = None):
        self.count = torch.cuda.device_count()
        self.lock_dir = Path(lock_dir or tempfile.gettempdir())
        self.job_num = job_num
        self.handle = None
        self.device: Optional[str] = None

    def __enter__(self) -> Optional[str]:
        for offset in range(self.count):
            index = (self.job_num + offset) % self.count
            handle = open(self.lock_dir / f"encoder-sweep-gpu{index}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.handle, self.device = handle, f"cuda:{index}"
            log.info("job %d runs on %s", self.job_num, self.device)
            break
        else:
            if self.count:
                raise RuntimeError(f"all {self.count} GPUs are taken by other jobs; lower hydra.launcher.n_jobs")
        return self.device

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
