"""GPU claims: a job locks a physical card (by UUID) only where it picks its GPU itself, waits a
bounded time when every card is taken, and a job that gets none fails visibly: its run dir says
why and the sweep exits non-zero naming it. Lock files another user left behind do not lock us out.
What a CPU cannot have is faked: the visible GPUs (count and UUIDs), another job holding them."""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import read_write

from helpers.app import REPO, app_env
from helpers.rundirs import compose_config, metrics, run_dirs
from sweep.launch.resources import GpuClaim, default_n_jobs

SCHEDULER_VARS = ("SLURM_JOB_ID", "SLURM_STEP_GPUS", "SUBMITIT_EXECUTOR")


@pytest.fixture
def gpus(monkeypatch):
    """Call with the UUIDs of the visible GPUs, in logical order; call again to see them as another
    process does (another CUDA_VISIBLE_DEVICES order). No scheduler, unless a test sets one."""

    def see(*uuids):
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(uuids))
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=uuids[i]))
        return list(uuids)

    for name in SCHEDULER_VARS:
        monkeypatch.delenv(name, raising=False)
    return see


def card(device, order):
    """The physical card behind the cuda:N a claim returned, for a process that sees `order`."""
    return order[int(device.split(":")[1])]


def test_jobs_that_see_the_gpus_in_different_orders_never_share_a_card(gpus, tmp_path):
    with ExitStack() as held:
        order = gpus("GPU-aaaa", "GPU-bbbb")  # CUDA_VISIBLE_DEVICES=0,1
        first = card(held.enter_context(GpuClaim(0, tmp_path)), order)
        order = gpus("GPU-bbbb", "GPU-aaaa")  # CUDA_VISIBLE_DEVICES=1,0: its cuda:1 is the first job's card
        second = card(held.enter_context(GpuClaim(1, tmp_path)), order)
    assert first != second


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1"])
def test_a_named_device_claims_no_gpu(gpus, tmp_path, device):
    gpus("GPU-aaaa", "GPU-bbbb")
    with GpuClaim(0, tmp_path, device=device) as claimed:
        assert claimed is None and not list(tmp_path.iterdir())


@pytest.mark.parametrize("variable", SCHEDULER_VARS)
def test_gpus_a_scheduler_assigned_are_not_claimed(gpus, tmp_path, monkeypatch, variable):
    gpus("GPU-aaaa", "GPU-bbbb")
    monkeypatch.setenv(variable, "7")
    with GpuClaim(0, tmp_path) as claimed:
        assert claimed is None and not list(tmp_path.iterdir())


def test_a_single_gpu_is_used_without_a_claim(gpus, tmp_path):
    gpus("GPU-aaaa")
    with GpuClaim(0, tmp_path) as claimed:
        assert claimed is None and not list(tmp_path.iterdir())


def test_a_job_waits_for_a_card_another_job_frees(gpus, tmp_path, caplog):
    order = gpus("GPU-aaaa", "GPU-bbbb")
    with GpuClaim(0, tmp_path) as mine, ExitStack() as other:
        theirs = other.enter_context(GpuClaim(1, tmp_path))
        threading.Timer(0.3, other.close).start()  # the other job ends
        with caplog.at_level("INFO", logger="sweep.launch.resources"):
            with GpuClaim(2, tmp_path, wait_min=0.5, poll_s=0.05) as waited:
                assert card(waited, order) == card(theirs, order) != card(mine, order)
    assert [r.levelname for r in caplog.records if "waits up to trainer.gpu_wait_min=0.5" in r.message] == ["WARNING"]


def test_a_job_that_waited_in_vain_fails_naming_the_knobs(gpus, tmp_path, caplog):
    gpus("GPU-aaaa", "GPU-bbbb")
    with GpuClaim(0, tmp_path), GpuClaim(1, tmp_path), caplog.at_level("INFO", logger="sweep.launch.resources"):
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            with GpuClaim(2, tmp_path, wait_min=0.005, poll_s=0.05):
                pass
    assert 0.3 <= time.monotonic() - started < 5
    message = str(caught.value)
    assert "trainer.gpu_wait_min=0.005" in message and "hydra.launcher.n_jobs" in message and "\n" not in message
    assert sum("GPU-aaaa, GPU-bbbb" in r.message for r in caplog.records) == 1  # said once that it waits, and for what


@pytest.mark.parametrize("gpu_count, scheduler, expected", [(0, None, 2), (1, None, 1), (4, None, 4), (4, "123", 1)])
def test_joblib_runs_one_job_per_gpu_it_can_claim(gpus, monkeypatch, gpu_count, scheduler, expected):
    gpus(*[f"GPU-{i}" for i in range(gpu_count)])
    if scheduler:
        monkeypatch.setenv("SLURM_JOB_ID", scheduler)
    assert default_n_jobs() == expected


# ---------------------------------------------------------------- another user's lock files


def as_user(uid, lock_dir):
    """Another user's job in a forked process (fork, not exec: the venv's interpreter lives under
    root's 0700 home): it claims a GPU and holds it until the returned release() is called.
    Returns what the claim gave (or the error it raised) and release()."""
    answer_r, answer_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(answer_r), os.close(hold_w)
            if uid is not None:
                os.setgroups([])
                os.setgid(pwd.getpwuid(uid).pw_gid)
                os.setuid(uid)
            os.umask(0o022)
            with GpuClaim(0, lock_dir) as device:
                os.write(answer_w, str(device).encode())
                os.read(hold_r, 1)  # a byte, not EOF: later forks hold copies of this pipe's write end
            code = 0
        except BaseException as error:
            os.write(answer_w, f"{type(error).__name__}: {error}".encode())
        finally:
            os._exit(code)
    os.close(answer_w), os.close(hold_r)
    answer = os.read(answer_r, 4096).decode()
    os.close(answer_r)

    def release():
        os.write(hold_w, b"x")
        os.close(hold_w)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    return answer, release


def test_lock_files_another_user_left_do_not_lock_us_out(gpus):
    order = gpus("GPU-aaaa", "GPU-bbbb")
    # a dir every user can reach and write, like /tmp (pytest's tmp_path is private to root)
    lock_dir = Path(tempfile.mkdtemp(prefix="gpu-locks-", dir="/tmp"))
    try:
        lock_dir.chmod(0o1777)
        root = os.geteuid() == 0
        # user A's sweep ran here before, one job per card, and left its lock files read-only to
        # everyone else (0644 under a 022 umask): as root, A is uid 1 for real; else our own files
        user_a = [as_user(1 if root else None, lock_dir) for _ in order]
        for answer, release in user_a:
            assert answer.startswith("cuda:") and release() == 0, answer
        files = sorted(lock_dir.iterdir())
        assert len(files) == 2
        for path in files:
            path.chmod(0o644 if root else 0o444)
        # user B (nobody) claims a card while a second process on this machine claims the other
        answer, release = as_user(pwd.getpwnam("nobody").pw_uid if root else None, lock_dir)
        try:
            assert answer.startswith("cuda:"), answer
            with GpuClaim(0, lock_dir) as ours:
                assert ours is not None and card(ours, order) != card(answer, order)
                with pytest.raises(Exception, match="locked by other jobs"):
                    with GpuClaim(0, lock_dir):
                        pass
        finally:
            exit_code = release()
        assert exit_code == 0
    finally:
        shutil.rmtree(lock_dir)


def test_lock_files_we_create_are_open_to_every_user(gpus, tmp_path):
    gpus("GPU-aaaa", "GPU-bbbb")
    old_umask = os.umask(0o077)
    try:
        with GpuClaim(0, tmp_path):
            pass
    finally:
        os.umask(old_umask)
    assert [oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()] == ["0o666"]


# ---------------------------------------------------------------- a job that gets no GPU, in a sweep

# the train app with the GPUs faked as above: argv = uuids, train.py, its arguments
FAKE_GPUS_APP = """
import runpy, sys, types, torch
uuids = sys.argv[1].split(",")
torch.cuda.device_count = lambda: len(uuids)
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(uuid=uuids[i])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_job_that_gets_no_gpu_fails_the_sweep_and_names_its_cell(gpus, tmp_path):
    gpus("GPU-aaaa", "GPU-bbbb")
    lock_dir, sweep_dir = tmp_path / "locks", tmp_path / "sweep"
    lock_dir.mkdir()
    cmd = [
        sys.executable,
        "-c",
        FAKE_GPUS_APP,
        "GPU-aaaa,GPU-bbbb",
        str(REPO / "sweep" / "train.py"),
        "-m",
        "experiment=smoke",
        "model=bert",
        "pooling=cls",
        "trainer.epochs=1",
        "logger=none",
        "trainer.device=auto,cpu",
        "trainer.gpu_wait_min=0",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    with GpuClaim(0, lock_dir), GpuClaim(1, lock_dir):  # another sweep holds both cards
        result = subprocess.run(
            cmd, cwd=REPO, env=app_env(TMPDIR=str(lock_dir)), capture_output=True, text=True, timeout=600
        )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    dirs = {("auto" if "trainer.device=auto" in d.name else "cpu"): d for d in run_dirs(sweep_dir)}
    assert metrics(dirs["cpu"])["status"] == "completed"  # trainer.device=cpu needs no GPU lock
    failed = metrics(dirs["auto"])
    assert failed["status"] == "failed" and "trainer.gpu_wait_min=0" in failed["error"], failed
    assert "did not complete" in output and dirs["auto"].name in output


class NoFreeGpu:
    """A GPU claim that finds every card taken."""

    def __enter__(self):
        raise RuntimeError("all 2 GPUs are locked by other jobs")

    def __exit__(self, *exc):
        pass


def test_a_job_whose_gpu_claim_fails_says_so_in_its_run_dir(tmp_path):
    from sweep.job.runner import run

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
    from sweep.launch.failed_jobs import FailedJobs

    config = sweep_config(
        tmp_path,
        "experiment=smoke",
        "model=bert,modernbert",
        "pooling=cls,mean",
        "logger=none",
        "data.local_dir=/data/imdb",
    )
    callback = FailedJobs()
    callback.on_multirun_start(config)
    # logger is an excluded key; a path value becomes one dir level (sweep.launch.dirnames.run_dirname)
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
    from sweep.launch.failed_jobs import FailedJobs

    config = sweep_config(tmp_path, "experiment=smoke", "model=bert,modernbert")
    callback = FailedJobs()
    write_status(tmp_path / "old-sweep-cell", "failed")  # not this sweep's: left alone
    os.utime(tmp_path / "old-sweep-cell" / "metrics.json", (0, 0))
    callback.on_multirun_start(config)
    for model in ("bert", "modernbert"):
        write_status(tmp_path / f"experiment=smoke,model={model}", "completed")
    callback.on_multirun_end(config)
    assert "did not complete" not in caplog.text
