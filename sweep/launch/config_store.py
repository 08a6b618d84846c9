"""Hydra's side of the config: the schema of sweep/config/schema.py registered in the ConfigStore (so a
typo in a key or a wrong type fails at compose time, and each group's YAMLs start from its bases),
and the resolvers the config uses: a job's run-dir name from its overrides, joblib's default
number of jobs."""

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sweep.config.schema import GROUP_BASES, Config
from sweep.launch.dirnames import run_dirname
from sweep.launch.resources import default_n_jobs
from sweep.launch.tune import TuneSweeperConf


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for group, bases in GROUP_BASES.items():
        for name, node in bases.items():
            store.store(group=group, name=name, node=node)
    store.store(group="hydra/sweeper", name="tune", node=TuneSweeperConf, provider="encoder-sweep")
    OmegaConf.register_new_resolver("run_dirname", run_dirname, replace=True)
    OmegaConf.register_new_resolver("default_n_jobs", default_n_jobs, replace=True)


register()
