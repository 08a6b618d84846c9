"""The train app: compose the config, hand it and the job's output dir to the runner, return the
best validation accuracy (the value a Hydra sweeper optimises).

    python sweep/train.py -m model=bert,modernbert pooling=cls,mean
    python sweep/train.py -m model=bert,modernbert pooling=cls,mean experiment=smoke
"""
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import sweep.config  # noqa: F401  registers the schema and the run_dirname resolver
from sweep.runner import run

log = logging.getLogger("sweep.train")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    group = Path(hydra_cfg.sweep.dir).name if multirun else "single"
    name = run_dir.name if multirun else run_dir.parent.name + "_" + run_dir.name
    return run(cfg, run_dir, group=f"{Path(hydra_cfg.sweep.dir).parent.name}_{group}" if multirun else group, name=name)


if __name__ == "__main__":
    sys.exit(main())
