"""Hydra's side of the config: the schema of sweep/schema.py registered in the ConfigStore (so a
typo in a key or a wrong type fails at compose time, and each group's YAMLs start from its bases),
and the resolvers the config uses: a job's run-dir name from its overrides, joblib's default
number of jobs."""

import hashlib

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from sweep.resources import default_n_jobs
from sweep.schema import GROUP_BASES, Config
from sweep.tune import TuneSweeperConf

MAX_DIRNAME_BYTES = 200  # file systems take 255 bytes per path component; room left for the hash


def run_dirname(override_dirname: str) -> str:
    """A job's overrides as one path component: readable, stable, unique per combination. A name
    too long for a file system (a model.id that is a deep local path) is cut and ends in a hash of
    the whole, so it stays unique."""
    name = override_dirname.replace("/", "_").replace("\\", "_") or "default"
    encoded = name.encode()
    if len(encoded) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    return encoded[: MAX_DIRNAME_BYTES - len(digest) - 1].decode(errors="ignore") + "-" + digest


def job_dirname(overrides, naming) -> str:
    """The run-dir name Hydra gives a job with these overrides (`key=value` strings) under this
    hydra.job.config.override_dirname naming (its exclude_keys and separators), as run_dirname cuts it."""
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return run_dirname(
        get_overrides_dirname(
            parsed, exclude_keys=list(naming.exclude_keys), item_sep=naming.item_sep, kv_sep=naming.kv_sep
        )
    )


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
