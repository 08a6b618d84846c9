"""The smoke grid under the parallel launchers: joblib on one machine, submitit_local as the
stand-in for a SLURM cluster. Same seed, same numbers as the basic launcher."""
import re

import pytest

from conftest import SMOKE_GRID, compose_config, metrics, run_dirs, train
from wandb_records import summarize

TIMING_KEYS = {"train_seconds", "train_samples_per_s"}


def assert_same_numbers(sweep_dir, reference_dir):
    for run_dir in run_dirs(sweep_dir):
        ours, reference = metrics(run_dir), metrics(reference_dir / run_dir.name)
        assert ours["status"] == "completed", run_dir.name
        for key in reference.keys() - TIMING_KEYS:
            assert ours[key] == reference[key], f"{run_dir.name}: {key}"


def test_joblib_runs_the_grid_in_parallel_with_the_same_numbers(smoke_sweep, tmp_path):
    sweep_dir = tmp_path / "joblib"
    train(*SMOKE_GRID, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}")
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 4
    assert_same_numbers(sweep_dir, smoke_sweep)
    for run_dir in dirs:
        log = (run_dir / "train.log").read_text()
        assert re.search(r"torch threads: \d+ \(\d+ cores, 2 parallel job\(s\)\)", log), run_dir.name
        assert summarize(run_dir)["exit_code"] == 0  # every wandb run finished


def test_joblib_defaults_to_two_jobs_without_gpus():
    from hydra.core.hydra_config import HydraConfig
    from hydra import compose, initialize_config_dir

    from conftest import REPO
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=joblib"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert cfg.hydra.launcher.n_jobs == 2


def test_slurm_preset_composes_with_one_gpu_per_job_and_requeues():
    from hydra import compose, initialize_config_dir

    from conftest import REPO
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.partition == "gpu" and launcher.max_num_timeout > 0


@pytest.mark.slow
def test_submitit_local_runs_the_grid(smoke_sweep, tmp_path):
    sweep_dir = tmp_path / "submitit"
    train(*SMOKE_GRID, "logger=none", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=15",
          f"hydra.sweep.dir={sweep_dir}", timeout=900)
    assert len(run_dirs(sweep_dir)) == 4
    assert_same_numbers(sweep_dir, smoke_sweep)
