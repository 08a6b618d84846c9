"""One job's share of the machine: its torch threads on CPU and, where the job itself picks among
several GPUs (joblib on a multi-GPU machine), a GPU of its own. Parallel jobs must not fight over
cores or land two on one GPU."""

import fcntl
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import torch

from sweep.errors import GpuUnavailableError

log = logging.getLogger(__name__)

# set in a job whose GPUs a scheduler chose (CUDA_VISIBLE_DEVICES): SLURM, and submitit (its slurm
# and local executors both export SUBMITIT_EXECUTOR); such a job uses what it was given
SCHEDULER_VARS = ("SLURM_JOB_ID", "SLURM_STEP_GPUS", "SUBMITIT_EXECUTOR")


def default_n_jobs() -> int:
    """Parallel jobs on one machine: one per GPU where the jobs pick their GPUs themselves (each
    claims one); one where they cannot (a single GPU, or GPUs a scheduler assigned: they would all
    use cuda:0); 2 without GPUs."""
    count = torch.cuda.device_count()  # not gpu_uuids(): the launching process needs no CUDA context
    if count > 1 and scheduler_var() is None:
        return count
    return 1 if count else 2


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


def gpu_uuids() -> List[str]:
    """The physical identity of each visible GPU, in logical order (cuda:0, cuda:1, ...). The
    same card has the same UUID whatever CUDA_VISIBLE_DEVICES made of its index."""
    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def scheduler_var() -> Optional[str]:
    """The environment variable that says a scheduler assigned this job its GPUs, if any."""
    return next((name for name in SCHEDULER_VARS if os.environ.get(name)), None)


def lock_path(lock_dir: Path, uuid: str) -> Path:
    return Path(lock_dir) / f"encoder-sweep-gpu-{re.sub(r'[^A-Za-z0-9-]', '_', uuid)}.lock"


def open_lock_file(path: Path) -> int:
    """A descriptor to flock: read-only, so that a lock file another user created (0644, under
    their umask or by an older version) opens too; flock needs no write permission."""
    try:
        # O_EXCL: we create it, so we may chmod it; 0666 whatever our umask, for every other user
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.fchmod(fd, 0o666)
        return fd
    except FileExistsError:
        # no O_CREAT here: with fs.protected_regular, O_CREAT on another user's file in a sticky
        # dir like /tmp is refused even when the file exists
        return os.open(path, os.O_RDONLY)


class GpuClaim:
    """An exclusive lock on one physical GPU (by UUID) for the life of a job, taken only where the
    job picks its GPU itself: trainer.device=auto, more than one GPU visible, and no scheduler that
    assigned them. First choice the job number modulo the GPU count, else the next free one; when
    all are locked, polls for up to wait_min minutes, then raises GpuUnavailableError.
    `with GpuClaim(...) as device` gives "cuda:<logical index>" of the claimed card, or None where
    nothing was claimed (trainer.device decides)."""

    def __init__(
        self,
        job_num: int = 0,
        lock_dir: Optional[Path] = None,
        device: str = "auto",
        wait_min: float = 0.0,
        poll_s: float = 5.0,
    ):
        self.job_num, self.device, self.wait_min, self.poll_s = job_num, device, wait_min, poll_s
        self.lock_dir = Path(
            lock_dir or tempfile.gettempdir()
        )  # shared by every user: /tmp unless TMPDIR says otherwise
        self.fd: Optional[int] = None

    def __enter__(self) -> Optional[str]:
        if self.device != "auto":
            return None  # the user named the device
        assigned_by = scheduler_var()
        if assigned_by:
            log.info("GPUs assigned by a scheduler (%s is set): no GPU lock taken", assigned_by)
            return None
        uuids = gpu_uuids()
        if len(uuids) < 2:
            return None  # nothing to choose among
        deadline = time.monotonic() + self.wait_min * 60
        waiting = False
        while True:
            index = self._lock_one(uuids)
            if index is not None:
                log.info(
                    "job %d runs on cuda:%d (GPU %s)%s",
                    self.job_num,
                    index,
                    uuids[index],
                    " after waiting" if waiting else "",
                )
                return f"cuda:{index}"
            left = deadline - time.monotonic()
            if left <= 0:
                raise GpuUnavailableError(
                    f"no free GPU for job {self.job_num} after waiting trainer.gpu_wait_min={self.wait_min:g} min: "
                    f"all {len(uuids)} GPUs are locked by other jobs (lock files in {self.lock_dir}); "
                    f"lower hydra.launcher.n_jobs or raise trainer.gpu_wait_min"
                )
            if not waiting:
                log.warning(
                    "all %d GPUs (%s) are locked by other jobs; job %d waits up to trainer.gpu_wait_min=%g min",
                    len(uuids),
                    ", ".join(uuids),
                    self.job_num,
                    self.wait_min,
                )
                waiting = True
            time.sleep(min(self.poll_s, left))

    def _lock_one(self, uuids: List[str]) -> Optional[int]:
        for offset in range(len(uuids)):
            index = (self.job_num + offset) % len(uuids)
            fd = open_lock_file(lock_path(self.lock_dir, uuids[index]))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self.fd = fd
            return index
        return None

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None
