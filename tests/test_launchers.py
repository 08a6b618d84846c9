"""The smoke grid under the parallel launchers: joblib on one machine, submitit_local as the
stand-in for a SLURM cluster. Same seed, same numbers as the basic launcher."""

import pytest

from helpers.app import TIMING_KEYS, train_in_process
from helpers.rundirs import compose_config, metrics, run_dirs
from helpers.wandb_records import summarize
from sweep.launch.resources import available_cores


@pytest.mark.slow
def test_joblib_runs_the_grid_in_parallel_with_the_same_numbers(tmp_path):
    cores = available_cores()
    threads = max(1, cores // 2)  # an equal share of this machine's cores for each of the 2 jobs
    sweep_dir = tmp_path / "joblib"
    # one job per family, side by side: 2 jobs fill n_jobs=2
    # valid/acc after one epoch on one thread: 0.867 (bert), 0.872 (modernbert)
    grid = ["experiment=smoke", "model=bert,modernbert", "pooling=cls", "trainer.epochs=1"]
    train_in_process(*grid, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep_dir}")
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 2
    for run_dir in dirs:
        assert metrics(run_dir)["status"] == "completed" and metrics(run_dir)["valid/acc"] > 0.8, run_dir.name
        log = (run_dir / "train.log").read_text()
        assert f"torch threads: {threads} ({cores} cores)" in log, run_dir.name
        assert summarize(run_dir)["exit_code"] == 0  # every wandb run finished
    # the basic launcher with the same thread count (float sums depend on it) gives the same numbers
    basic = tmp_path / "basic"
    train_in_process(
        "experiment=smoke",
        "model=modernbert",
        "pooling=cls",
        "trainer.epochs=1",
        f"trainer.threads={threads}",
        "logger=none",
        f"hydra.sweep.dir={basic}",
    )
    ours = metrics(sweep_dir / "experiment=smoke,model=modernbert,pooling=cls,trainer.epochs=1")
    reference = metrics(run_dirs(basic)[0])
    for key in reference.keys() - TIMING_KEYS:
        assert ours[key] == reference[key], key


def test_joblib_defaults_to_two_jobs_without_gpus():
    assert compose_config("hydra/launcher=joblib", hydra_node=True).hydra.launcher.n_jobs == 2


def test_slurm_preset_composes_with_one_gpu_per_job_and_requeues():
    cfg = compose_config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra_node=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.partition == "gpu" and launcher.max_num_timeout > 0


def test_the_launchers_waits_are_their_defaults_unless_the_environment_shortens_them(monkeypatch):
    """A user's launcher looks every 2 s and gives a job that runs no more 30 s to show its result
    (the tests shorten both); a bad value is refused in one line before any job is submitted."""
    from sweep.errors import InputError
    from sweep.launch.cluster import GRACE_ENV, GRACE_S, POLL_ENV, POLL_S, seconds_from_env

    monkeypatch.delenv(GRACE_ENV, raising=False)
    monkeypatch.delenv(POLL_ENV, raising=False)
    assert (seconds_from_env(POLL_ENV, POLL_S), seconds_from_env(GRACE_ENV, GRACE_S)) == (2.0, 30.0)
    monkeypatch.setenv(GRACE_ENV, "5")
    assert seconds_from_env(GRACE_ENV, GRACE_S) == 5.0
    for bad in ("-1", "soon", "nan"):
        monkeypatch.setenv(GRACE_ENV, bad)
        with pytest.raises(InputError, match=f"{GRACE_ENV}={bad}: must be a number of seconds >= 0"):
            seconds_from_env(GRACE_ENV, GRACE_S)


def test_the_apps_imported_modules_are_frozen_out_of_the_collection_that_ends_each_job():
    """The basic launcher runs every job in one process, each ending with a full garbage collection
    (sweep/job/runner.py); over the ~450k objects of the imported modules it costs 0.3 s of CPU a job."""
    import gc

    import sweep.train  # noqa: F401  the app's entry: what `python sweep/train.py` imports first

    assert gc.get_freeze_count() > 100_000, gc.get_freeze_count()
