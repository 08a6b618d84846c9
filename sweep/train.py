"""The train app: compose the config, hand it and the job's output dir to the job, return the job's
best validation figure (the value a Hydra sweeper optimises).

    python sweep/train.py -m model=bert,modernbert pooling=cls,mean
    python sweep/train.py -m model=bert,modernbert pooling=cls,mean experiment=smoke
"""

import gc
import logging
import warnings
from typing import Optional

import hydra
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

import sweep.launch.config_store  # noqa: F401  registers the schema and the run_dirname resolver
from hydra_plugins.encoder_sweep import LocalLauncher, SlurmLauncher, TuneSweeper
from sweep.job.runner import run
from sweep.launch.app import CONFIG_DIR, this_job, when_failed
from sweep.launch.interrupts import RunInterrupted

# Each job ends with a full garbage collection (sweep/job/runner.py: its model and optimizer go before
# the process's next job starts). The ~450k objects of the modules imported above are never garbage:
# frozen out of every later collection, each of them costs 0.3 s of CPU less.
gc.collect()
gc.freeze()
# conf/hydra/launcher/joblib.yaml sets the plugin's defaults and is checked against its schema, as intended
warnings.filterwarnings("ignore", message="(?s).*is validated against ConfigStore schema with the same name")
for plugin in (SlurmLauncher, LocalLauncher, TuneSweeper):  # Hydra's scan misses an editable install's
    Plugins.instance().register(plugin)


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
