"""The train app: compose the config, hand it and the job's output dir to the job, return the job's
best validation figure (the value a Hydra sweeper optimises).

    python sweep/train.py -m model=bert,modernbert pooling=cls,mean
    python sweep/train.py -m model=bert,modernbert pooling=cls,mean experiment=smoke
"""

import gc
import logging
from typing import Optional

import hydra
from omegaconf import DictConfig

import sweep.launch.config_store  # noqa: F401  registers the schema and the run_dirname resolver
from sweep.job.runner import run
from sweep.launch.app import CONFIG_DIR, register_plugins, this_job, when_failed
from sweep.launch.interrupts import RunInterrupted

# Each job ends with a full garbage collection (sweep/job/runner.py: its model and optimizer go before
# the process's next job starts). The ~450k objects of the modules imported above are never garbage:
# frozen out of every later collection, each of them costs 0.3 s of CPU less.
gc.collect()
gc.freeze()
register_plugins()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    logging.raiseExceptions = False  # a log write that fails (a full disk) must not print a traceback of its own
    job = this_job(cfg)
    try:
        trial = job.tune_trial()
        return run(
            cfg, job.run_dir, group=job.group, name=job.name, gpu_claim=job.gpu_claim, threads=job.threads, trial=trial
        )
    except (Exception, RunInterrupted) as error:
        return when_failed(error, job)


if __name__ == "__main__":
    main()
