"""GPU claims: a job locks a physical card (by UUID) only where it picks its GPU itself, waits a
bounded time when every card is taken, and a job that gets none fails visibly: its run dir says
why and the sweep exits non-zero naming it. Lock files another user left behind do not lock us out.
What a CPU cannot have is faked: the visible GPUs (count and UUIDs), another job holding them."""
import json
import os

import pytest
from omegaconf import read_write

from conftest import compose_config, metrics

class NoFreeGpu:
    """A GPU claim that finds every card taken."""
    def __enter__(self):
        raise RuntimeError("all 2 GPUs are locked by other jobs")

    def __exit__(self, *exc):
        pass


def test_a_job_whose_gpu_claim_fails_says_so_in_its_run_dir(tmp_path):
    from sweep.runner import run

    with pytest.raises(RuntimeError):
        run(compose_config("experiment=smoke", "logger=none"), tmp_path / "run", gpu_claim=NoFreeGpu())
    failed = metrics(tmp_path / "run")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: all 2 GPUs are locked by other jobs"


# ---------------------------------------------------------------- FailedJobs: jobs that left nothing

def sweep_config(sweep_dir, *task_overrides):
    """The config FailedJobs gets at the end of `train.py -m task_overrides... hydra.sweep.dir=sweep_dir`."""
    cfg = compose_config(hydra_node=True)
    with read_write(cfg.hydra):
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.overrides.task = list(task_overrides)
    return cfg


def write_status(run_dir, status):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps({"status": status, "error": None}))


def test_failed_jobs_names_jobs_that_left_no_run_dir_or_no_metrics(tmp_path, caplog):
    from sweep.callbacks import FailedJobs

    config = sweep_config(tmp_path, "experiment=smoke", "model=bert,modernbert", "pooling=cls,mean", "logger=none",
                          "data.local_dir=/data/imdb")
    callback = FailedJobs()
    callback.on_multirun_start(config)
    # logger is an excluded key; a path value becomes one dir level (sweep.config.run_dirname)
    cell = "data.local_dir=_data_imdb,experiment=smoke,model={},pooling={}".format
    write_status(tmp_path / cell("bert", "cls"), "completed")
    write_status(tmp_path / cell("modernbert", "mean"), "completed")
    (tmp_path / cell("bert", "mean") / ".hydra").mkdir(parents=True)  # started, died before run() wrote
    # cell("modernbert", "cls") never got a dir
    with pytest.raises(SystemExit) as stopped, caplog.at_level("ERROR"):
        callback.on_multirun_end(config)
    assert stopped.value.code == 1
    assert "2 job(s)" in caplog.text
    for name in (cell("bert", "mean"), cell("modernbert", "cls")):
        assert f"{name}: left no metrics.json: it died before it started" in caplog.text


def test_failed_jobs_is_quiet_when_every_job_completed(tmp_path, caplog):
    from sweep.callbacks import FailedJobs

    config = sweep_config(tmp_path, "experiment=smoke", "model=bert,modernbert")
    callback = FailedJobs()
    write_status(tmp_path / "old-sweep-cell", "failed")  # not this sweep's: left alone
    os.utime(tmp_path / "old-sweep-cell" / "metrics.json", (0, 0))
    callback.on_multirun_start(config)
    for model in ("bert", "modernbert"):
        write_status(tmp_path / f"experiment=smoke,model={model}", "completed")
    callback.on_multirun_end(config)
    assert "did not complete" not in caplog.text
