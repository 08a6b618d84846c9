"""Fixtures shared by the test modules: the runs that several tests only read, trained once per
session. Helpers live in tests/helpers/."""

import os

import pytest

# before transformers / huggingface_hub are imported: the hub is unreachable here, fail at once;
# the in-process runs read the same settings a subprocess gets from helpers.app.app_env
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

from helpers.app import SMOKE_GRID, train_in_process  # noqa: E402  after the environment above

# 2 models x 2 poolings x 2 seeds, short: 4 cells of 2 seeds each, with 2-epoch curves
SEEDS_GRID = [
    "model=bert,modernbert",
    "pooling=cls,mean",
    "experiment=smoke",
    "logger=none",
    "seed=1,2",
    "trainer.epochs=2",
    "data.n_samples=1000",
    "trainer.save_best=false",
]


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """The README's smoke grid (2 models x 2 poolings, tiny models, generated data), run once."""
    sweep_dir = tmp_path_factory.mktemp("smoke") / "sweep"
    train_in_process(*SMOKE_GRID, f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir


@pytest.fixture(scope="session")
def seeds_sweep(tmp_path_factory):
    """The smoke grid over seed=1,2 for the collector (mean, std, seed-aware tests), run once."""
    sweep_dir = tmp_path_factory.mktemp("collect") / "sweep"
    train_in_process(*SEEDS_GRID, f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir
