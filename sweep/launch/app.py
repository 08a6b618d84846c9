"""The train app's Hydra side (sweep/train.py is the app): where the config tree is, what Hydra says
of this job (its run dir, group and name in the sweep, threads, GPU claim, tune trial), and what the
terminal shows of a job that failed."""

import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sweep.errors import InputError
from sweep.launch.cluster import slurm_requeues_this_job, under_submitit
from sweep.launch.interrupts import RunInterrupted
from sweep.launch.resources import GpuClaim, job_threads
from sweep.launch.trial import Trial

# the config tree, shipped in the package (sweep/conf; in a checkout a link to the repository's conf/): an
# absolute path, or Hydra would take a relative one for a Python package when run as a console script
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@dataclass
class ThisJob:
    """What Hydra says of the job the app runs."""

    run_dir: Path
    multirun: bool
    group: str  # the wandb group: the sweep, or "single"
    name: str  # the run's name: its dir (in a sweep), else its date and time
    threads: Optional[int]
    gpu_claim: Any

    def tune_trial(self) -> Optional[Trial]:
        """The hydra/sweeper=tune trial this job is (None outside a tuned sweep)."""
        return Trial.of_this_job(HydraConfig.get()) if self.multirun else None


def this_job(cfg: DictConfig) -> ThisJob:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group, name = f"{sweep_dir.parent.name}_{sweep_dir.name}", run_dir.name
    else:
        group, name = "single", f"{run_dir.parent.name}_{run_dir.name}"
    threads = job_threads(cfg.trainer.threads, hydra_cfg.launcher if multirun else {})
    # the runner takes the GPU (if this job picks one itself) after the run dir says "running", so a job
    # that gets none fails in its metrics.json like any other
    gpu_claim = GpuClaim(
        hydra_cfg.job.num if multirun else 0, device=cfg.trainer.device, wait_min=cfg.trainer.gpu_wait_min
    )
    return ThisJob(run_dir, multirun, group, name, threads, gpu_claim)


def when_failed(error: BaseException, job: ThisJob) -> None:
    """What a failed or interrupted job does last: the runner wrote it into the run dir (metrics.json,
    and train.log with the traceback); the terminal gets one line for a user's mistake, the traceback
    for anything else. In a sweep it returns: that hands submitit a result (it records none for a
    KeyboardInterrupt), so the other jobs go on and are collected, and sweep.launch.failed_jobs
    reports this one and exits non-zero at the end."""
    scheduled = job.multirun and under_submitit()
    if scheduled and slurm_requeues_this_job():
        # SLURM ends the job to start it again (scontrol requeue, pre-emption): no result, or the
        # launcher would collect the job now; the requeued job resumes and writes one
        sys.exit(f"stopped ({type(error).__name__}): SLURM requeues this job; it resumes from its last epoch")
    if isinstance(error, RunInterrupted) and not scheduled:
        raise error  # like Ctrl-C: the sweep stops
    if not job.multirun:
        if isinstance(error, InputError):
            sys.exit(f"error: {error}")  # the user's to fix: one line; the traceback is in train.log
        raise error  # Hydra prints the traceback, once
    if isinstance(error, InputError):
        print(f"error ({job.name}): {error}", file=sys.stderr)
    elif not isinstance(error, RunInterrupted):
        traceback.print_exception(error)
    return None
