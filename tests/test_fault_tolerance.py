"""Sweeps survive faults: a killed run resumes from its last epoch and ends as if it never stopped,
a completed sweep is skipped on rerun, a failing job does not take the others down, SIGTERM leaves
a resumable run."""

import json
import os
import shutil
import signal
import time

import pytest

from helpers.app import TIMING_KEYS, start, train_in_process, wait_for_log
from helpers.rundirs import metrics, run_dirs
from helpers.wandb_records import summarize

CELL = "experiment=smoke,model=bert,pooling=cls"


def no_partial_files(run_dir):
    leftovers = [
        p.name
        for p in run_dir.rglob(".*")
        if p.name.startswith((".metrics", ".history", ".best", ".resume", ".predictions"))
    ]
    assert not leftovers, leftovers
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())


def epoch_rows(run):
    """The epochs of a wandb run's history, in the order it logged them (one row per finished epoch)."""
    return [int(row["epoch"]) for row in run["history"] if "valid/acc" in row]


@pytest.mark.slow
def test_killed_run_resumes_at_its_next_epoch_and_ends_as_if_never_stopped(smoke_sweep, tmp_path):
    sweep_dir = tmp_path / "sweep"
    overrides = ["experiment=smoke", "model=bert", "pooling=cls", f"hydra.sweep.dir={sweep_dir}"]
    process = start(*overrides)
    run_dir = sweep_dir / CELL
    wait_for_log(run_dir / "train.log", "resumable state saved after epoch 2", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    no_partial_files(run_dir)
    assert metrics(run_dir)["status"] == "running"  # SIGKILL leaves no chance to write more
    train_in_process(*overrides)
    log = (run_dir / "train.log").read_text()
    assert "resuming after epoch 2" in log
    resumed, uninterrupted = metrics(run_dir), metrics(smoke_sweep / CELL)
    for key in uninterrupted.keys() - TIMING_KEYS:
        assert resumed[key] == uninterrupted[key], key
    assert not (run_dir / "resume_state.pt").exists()  # a finished run keeps best/, not optimizer states
    no_partial_files(run_dir)


def test_rerun_of_a_completed_sweep_skips_every_job_and_changes_no_file(smoke_sweep, tmp_path):
    sweep_dir = shutil.copytree(smoke_sweep, tmp_path / "sweep")  # the shared sweep stays as trained
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for p in sweep_dir.rglob("*")
        if p.is_file() and ".hydra" not in p.parts and p.name not in ("train.log", "multirun.yaml")
    }
    result = train_in_process(
        "model=bert,modernbert", "pooling=cls,mean", "experiment=smoke", f"hydra.sweep.dir={sweep_dir}"
    )
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in before}
    assert after == before
    for run_dir in run_dirs(sweep_dir):
        assert "skipped" in (run_dir / "train.log").read_text().splitlines()[-1]
    assert result.returncode == 0


def test_a_failing_job_does_not_stop_the_others(tmp_path):
    sweep_dir = tmp_path / "sweep"
    grid = [
        "experiment=smoke",
        "model=bert",
        "pooling=cls",
        "data.max_len=64,4096",
        "data.n_samples=1000",
        "trainer.epochs=1",
    ]
    result = train_in_process(*grid, f"hydra.sweep.dir={sweep_dir}", check=False)
    assert result.returncode != 0
    bad, good = (
        sweep_dir / "data.max_len=4096,data.n_samples=1000,experiment=smoke,model=bert,pooling=cls,trainer.epochs=1",
        sweep_dir / "data.max_len=64,data.n_samples=1000,experiment=smoke,model=bert,pooling=cls,trainer.epochs=1",
    )
    assert metrics(good)["status"] == "completed"
    failed = metrics(bad)
    assert failed["status"] == "failed" and "data.max_len=4096" in failed["error"]
    assert "data.max_len=4096" in (bad / "train.log").read_text()
    said = result.stderr + result.stdout
    assert "did not complete" in said and bad.name in said and "Traceback" not in said
    assert f"error ({bad.name}): data.max_len=4096 does not fit" in result.stderr  # as the job fails, one line
    rerun = train_in_process(*grid, f"hydra.sweep.dir={sweep_dir}", check=False)
    assert rerun.returncode != 0  # the failed job ran again (and failed again); the completed one was skipped
    assert "skipped" in (good / "train.log").read_text()


def test_nan_loss_stops_the_run_with_a_clear_message(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = train_in_process(
        "experiment=smoke",
        "model=bert",
        "pooling=cls",
        "optim.lr=1e30",
        "trainer.log_every_n_steps=1",
        f"hydra.sweep.dir={sweep_dir}",
        check=False,
    )
    assert result.returncode != 0
    failed = metrics(run_dirs(sweep_dir)[0])
    assert failed["status"] == "failed" and "NonFiniteLossError" in failed["error"] and "optim.lr" in failed["error"]


def test_a_sigterm_while_an_epoch_is_written_stops_the_run_once_the_epoch_is_saved(tmp_path, monkeypatch):
    """A SIGTERM (pre-emption, scancel, a killed sweep) that lands after an epoch was validated, while
    its history row, log line and resumable state are written, stops the run once they are on disk:
    the rerun resumes after that epoch and trains none twice (it used to retrain it, a lost epoch)."""
    import sweep.fit.loop
    from sweep.launch.interrupts import RunInterrupted

    sweep_dir = tmp_path / "sweep"
    overrides = [
        *CELL.split(","),
        "data.n_samples=400",
        "trainer.epochs=2",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    write_history = sweep.fit.loop.write_history

    def terminated_while_writing(run_dir, rows):
        if len(rows) == 1:  # epoch 1's bookkeeping
            os.kill(os.getpid(), signal.SIGTERM)
        write_history(run_dir, rows)

    monkeypatch.setattr(sweep.fit.loop, "write_history", terminated_while_writing)
    with pytest.raises(RunInterrupted):
        train_in_process(*overrides)
    (run_dir,) = run_dirs(sweep_dir)
    assert metrics(run_dir)["status"] == "interrupted" and (run_dir / "resume_state.pt").is_file()
    monkeypatch.undo()
    train_in_process(*overrides)
    log = (run_dir / "train.log").read_text()
    assert "resuming after epoch 1" in log
    assert [log.count(f"epoch {k}/2 ") for k in (1, 2)] == [1, 1]
    assert metrics(run_dir)["status"] == "completed"
    no_partial_files(run_dir)


@pytest.mark.slow
def test_sigterm_stops_the_run_and_the_rerun_resumes_into_the_same_wandb_run(tmp_path):
    """SIGTERM leaves an interrupted, resumable run; the rerun resumes it, and logs into the same
    wandb run id: one run however often it restarts, every epoch in its history once."""
    sweep_dir = tmp_path / "sweep"
    overrides = [
        "experiment=smoke",
        "model=bert",
        "pooling=cls",
        "data.n_samples=1000",
        "trainer.epochs=3",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    run_dir = sigterm_after_epoch_1(sweep_dir, overrides)
    stopped = metrics(run_dir)
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["error"]
    assert (run_dir / "resume_state.pt").is_file()
    no_partial_files(run_dir)
    train_in_process(*overrides)
    assert "resuming after epoch" in (run_dir / "train.log").read_text()
    assert metrics(run_dir)["status"] == "completed" and metrics(run_dir)["epochs_run"] == 3
    run = summarize(run_dir)
    assert run["parts"] == 2 and run["exit_code"] == 0
    assert epoch_rows(run) == [1, 2, 3]


def sigterm_after_epoch_1(sweep_dir, overrides):
    """Starts the sweep, sends SIGTERM once epoch 1's resumable state is saved, checks the process
    stopped with an error, and returns the run dir."""
    process = start(*overrides)
    run_dir = run_dirs_when_ready(sweep_dir, process)
    wait_for_log(run_dir / "train.log", "resumable state saved after epoch 1", process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) != 0
    return run_dir


def run_dirs_when_ready(sweep_dir, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [d for d in sweep_dir.glob("*") if d.is_dir() and not d.name.startswith(".")]
        if found:
            return found[0]
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no run dir appeared in {sweep_dir}")


def job_pid(run_dir, process, timeout=120):
    """The process of a submitit_local job: its id is the pid, and Hydra records it as hydra.job.id."""
    from omegaconf import OmegaConf

    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    wait_for_log(hydra_file, "id:", process, timeout)
    return int(OmegaConf.load(hydra_file).hydra.job.id)


@pytest.mark.slow
def test_sigterm_under_submitit_leaves_a_resumable_run_and_the_launcher_collects_every_job(tmp_path):
    """submitit_local, the stand-in for SLURM (each job its own process, 1 thread through
    cpus_per_task): submitit ignores SIGTERM; the app stops on it, and must still hand submitit a
    result, so the launcher collects every job and FailedJobs lists the interrupted one."""
    sweep_dir = tmp_path / "sweep"
    overrides = [
        "experiment=smoke",
        "model=bert",
        "pooling=cls,mean",
        "data.n_samples=1000",
        "trainer.epochs=3",
        "logger=none",
        "hydra/launcher=submitit_local",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    output = tmp_path / "launcher.out"
    process = start(*overrides, stdout=output)
    stopped = sweep_dir / "data.n_samples=1000,experiment=smoke,model=bert,pooling=cls,trainer.epochs=3"
    other = sweep_dir / "data.n_samples=1000,experiment=smoke,model=bert,pooling=mean,trainer.epochs=3"
    pid = job_pid(stopped, process)
    wait_for_log(stopped / "train.log", "resumable state saved after epoch 1", process)
    os.kill(pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    said = output.read_text() + stderr
    assert process.returncode != 0
    assert "Traceback" not in said and "UncompletedJobError" not in said, said[-3000:]
    assert "did not complete" in said and stopped.name in said, said[-3000:]
    assert metrics(other)["status"] == "completed" and metrics(other)["valid/acc"] > 0.6
    assert "torch threads: 1 (" in (other / "train.log").read_text()  # cpus_per_task=1
    assert metrics(stopped)["status"] == "interrupted" and (stopped / "resume_state.pt").is_file()
    # the state it left resumes under any launcher: in this process, on the basic one (SLURM's
    # rerun of a SIGTERMed array job is test_slurm.py's)
    train_in_process(*[o for o in overrides if "launcher" not in o])
    assert "resuming after epoch" in (stopped / "train.log").read_text()
    assert metrics(stopped)["status"] == "completed" and metrics(stopped)["epochs_run"] == 3
