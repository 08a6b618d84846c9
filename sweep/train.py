"""The train app: compose the config, hand it and the job's output dir to the runner, return the
best validation accuracy (the value a Hydra sweeper optimises).

    python sweep/train.py -m model=bert,modernbert pooling=cls,mean
    python sweep/train.py -m model=bert,modernbert pooling=cls,mean experiment=smoke
"""

import gc
import logging
import sys
import traceback
import warnings
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig

import sweep.config  # noqa: F401  registers the schema and the run_dirname resolver
from hydra_plugins.encoder_sweep import LocalLauncher, SlurmLauncher, TuneSweeper
from sweep.cluster import slurm_requeues_this_job, under_submitit
from sweep.errors import InputError
from sweep.interrupts import RunInterrupted
from sweep.resources import GpuClaim, job_threads
from sweep.runner import run
from sweep.trial import Trial

# Each job ends with a full garbage collection (sweep/runner.py: its model and optimizer go before
# the process's next job starts). The ~450k objects of the modules imported above are never garbage:
# frozen out of every later collection, each of them costs 0.3 s of CPU less.
gc.collect()
gc.freeze()
# conf/hydra/launcher/joblib.yaml sets the plugin's defaults and is checked against its schema, as intended
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema with the same name")
# Hydra's plugin scan does not see packages of an editable install (pip install -e): name ours
for plugin in (SlurmLauncher, LocalLauncher, TuneSweeper):
    Plugins.instance().register(plugin)


# an absolute path: run as the encoder-sweep-train console script, Hydra would take "../conf" for a Python package
@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    logging.raiseExceptions = False  # a log write that fails (a full disk) must not print a traceback of its own
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if multirun:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        group, name = f"{sweep_dir.parent.name}_{sweep_dir.name}", run_dir.name
    else:
        group, name = "single", f"{run_dir.parent.name}_{run_dir.name}"
    threads = job_threads(cfg.trainer.threads, hydra_cfg.launcher if multirun else {})
    # run() takes the GPU (if this job picks one itself) after the run dir says "running", so a job
    # that gets none fails in its metrics.json like any other
    gpu_claim = GpuClaim(
        hydra_cfg.job.num if multirun else 0, device=cfg.trainer.device, wait_min=cfg.trainer.gpu_wait_min
    )
    try:
        trial = Trial.of_this_job(hydra_cfg) if multirun else None  # a hydra/sweeper=tune trial
        return run(cfg, run_dir, group=group, name=name, gpu_claim=gpu_claim, threads=threads, trial=trial)
    except (Exception, RunInterrupted) as error:
        scheduled = multirun and under_submitit()
        if scheduled and slurm_requeues_this_job():
            # SLURM ends the job to start it again (scontrol requeue, pre-emption): no result, or the
            # launcher would collect the job now; the requeued job resumes and writes one
            sys.exit(f"stopped ({type(error).__name__}): SLURM requeues this job; it resumes from its last epoch")
        if isinstance(error, RunInterrupted) and not scheduled:
            raise  # like Ctrl-C: the sweep stops
        if not multirun:
            if isinstance(error, InputError):
                sys.exit(f"error: {error}")  # the user's to fix: one line; the traceback is in train.log
            raise  # Hydra prints the traceback, once
        # run() wrote the failure (and traceback) or the interruption into the run dir; the terminal
        # gets one line for a user's mistake, the traceback for anything else. Returning hands
        # submitit a result (it records none for a KeyboardInterrupt), so the other jobs go on and
        # are collected, and sweep.callbacks.FailedJobs reports this one and exits non-zero at the end
        if isinstance(error, InputError):
            print(f"error ({name}): {error}", file=sys.stderr)
        elif not isinstance(error, RunInterrupted):
            traceback.print_exception(error)
        return None


if __name__ == "__main__":
    main()
