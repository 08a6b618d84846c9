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


def set_threads(parallel_jobs: int) -> int:
    """An equal share of the cores (joblib's loky workers would otherwise start with 1 thread)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // max(parallel_jobs, 1))
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%d cores, %d parallel job(s))", threads, cores, parallel_jobs)
    return threads


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
