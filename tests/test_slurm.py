"""The grid on a real SLURM cluster through hydra/launcher=slurm (the single-node cluster of
tests/slurm/, which .ci/run starts): an array of jobs, a requeue, a time limit, SIGTERM to one job,
a failing job, and one wandb run per cell however often it restarts. Skipped where SLURM is not
installed; under CI (the CI env var) they fail instead when the cluster is not up."""

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.app import REPO, TIMING_KEYS, app_env, start, train, train_in_process, wait_for_log
from helpers.rundirs import metrics, run_dirs
from helpers.wandb_records import summarize
from sweep.collect import main as collect
from sweep.launch.cluster import GRACE_ENV

# one xdist worker runs this file (--dist loadfile), first (conftest.py), one test after another: the
# cluster is one node of 2 cores, two tests restart its daemons, and their waits on the scheduler
# overlap the other worker's CPU-bound tests
pytestmark = pytest.mark.slurm

# the commands of the README's cluster section: CPU jobs of one core on the debug partition
SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]
CELL = ["experiment=smoke", "data.n_samples=1000", "trainer.epochs=4"]  # ~2 s an epoch on one core
BERT_CLS = "data.n_samples=1000,experiment=smoke,model=bert,pooling=cls,trainer.epochs=4"
TIMEOUT = 240  # seconds any one sweep of this module may take


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """The cluster answers and its node takes jobs; else skip (a laptop), or fail under CI."""
    problem = None
    if shutil.which("sinfo") is None:
        problem = "SLURM is not installed (no sinfo)"
    else:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
        if states.returncode != 0 or not set(states.stdout.split()) & {"idle", "mix", "alloc"}:
            problem = f"the SLURM cluster is not up (sinfo: {(states.stdout + states.stderr).strip() or 'no nodes'})"
    if problem and os.environ.get("CI"):
        pytest.fail(f"{problem}: .ci/run starts it with tests/slurm/start.sh")
    if problem:
        pytest.skip(f"{problem}; tests/slurm/start.sh starts a single-node one (as root)")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """bert/cls of CELL, uninterrupted, under the basic launcher at the slurm jobs' thread count."""
    sweep_dir = tmp_path_factory.mktemp("reference")
    train_in_process(
        *CELL, "model=bert", "pooling=cls", "trainer.threads=1", "logger=none", f"hydra.sweep.dir={sweep_dir}"
    )
    return metrics(run_dirs(sweep_dir)[0])


def same_numbers(run_dir, reference):
    ours = metrics(run_dir)
    assert ours["status"] == "completed", ours
    for key in reference.keys() - TIMING_KEYS:
        assert ours[key] == reference[key], key


def job_id(run_dir, process):
    """The SLURM id of the job that runs run_dir (Hydra records submitit's as hydra.job.id)."""
    wait_for_log(run_dir / ".hydra" / "hydra.yaml", "id:", process, timeout=TIMEOUT)
    return str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def finish(process, output, timeout=TIMEOUT):
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the sweep ran past {timeout} s:\n{output.read_text()[-3000:]}") from None
    return output.read_text() + stderr


class ReleaseRequeued(threading.Thread):
    """SLURM holds a requeued job for two minutes before it may start again (its BeginTime): let
    it start at once, so the tests do not wait. Counts the restarts it saw."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.released = threading.Event(), []

    def run(self):
        while not self.stop.wait(1):
            held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True).stdout
            for line in held.splitlines():
                job, reason = line.split(maxsplit=1)
                if reason == "BeginTime":
                    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
                    self.released.append(job)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def epochs_logged(run_dir):
    """The epochs in the run dir's wandb run (there must be exactly one run id), in logged order."""
    run = summarize(run_dir)
    return [int(row["epoch"]) for row in run["history"] if "valid/acc" in row]


# ---------------------------------------------------------------- 1. the grid as an array


def test_the_smoke_grid_runs_as_an_array_with_the_basic_launchers_numbers(tmp_path, reference, capsys):
    sweep_dir = tmp_path / "sweep"
    train_in_process(  # the launcher in this process: it waits on the jobs, which are SLURM's
        *SLURM,
        *CELL,
        "model=bert,modernbert",  # one job of each family, on the node's two cores at once
        "pooling=cls",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 2
    ids = {str(OmegaConf.load(d / ".hydra/hydra.yaml").hydra.job.id) for d in dirs}
    assert len({i.split("_")[0] for i in ids}) == 1 and all("_" in i for i in ids), ids  # one array, a task per cell
    for run_dir in dirs:
        assert metrics(run_dir)["status"] == "completed", run_dir.name
        assert "torch threads: 1 (" in (run_dir / "train.log").read_text()  # cpus_per_task=1
    same_numbers(sweep_dir / BERT_CLS, reference)
    assert collect([str(sweep_dir), "--out", str(tmp_path / "table")]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if re.match(r"\|\s*(bert|modernbert)\s*\|", line)]
    assert len(rows) == 2, table


def test_a_tune_sweep_shares_its_studies_with_the_nodes_through_the_journal(tmp_path):
    """hydra/sweeper=tune with the slurm launcher, 2 cells x 2 trials: the jobs report each epoch to
    their trials in the sweep dir's journal from the node, and the sweeper reads their outcomes."""
    import optuna

    from sweep.launch.tune import journal_storage

    sweep_dir = tmp_path / "sweep"
    train_in_process(
        *SLURM,
        "hydra/sweeper=tune",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        'hydra.sweeper.params={optim.lr: "tag(log, interval(1e-3, 1e-2))"}',
        "experiment=smoke",
        "data.n_samples=400",
        "trainer.epochs=2",
        "model=bert,modernbert",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    storage = journal_storage(sweep_dir)
    for cell in ("model=bert", "model=modernbert"):
        trials = optuna.load_study(study_name=cell, storage=storage).get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], cell
        for trial in trials:  # each epoch's valid/acc, written by the job on the node
            run_dir = sweep_dir / f"{cell},trial={trial.user_attrs['slot']}"
            assert metrics(run_dir)["status"] == "completed"
            assert str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id).split("_")[0].isdigit()
            assert sorted(trial.intermediate_values) == [1, 2]
            assert max(trial.intermediate_values.values()) == pytest.approx(trial.value)


# ---------------------------------------------------------------- 2. scontrol requeue


@pytest.fixture(scope="module")
def requeued(tmp_path_factory):
    """bert/cls requeued by `scontrol requeue` after its second epoch, with wandb (offline)."""
    sweep_dir = tmp_path_factory.mktemp("requeued") / "sweep"
    output = sweep_dir.parent / "launcher.out"
    with ReleaseRequeued() as releaser:
        process = start(*SLURM, *CELL, "model=bert", "pooling=cls", f"hydra.sweep.dir={sweep_dir}", stdout=output)
        run_dir = sweep_dir / BERT_CLS
        job = job_id(run_dir, process)
        wait_for_log(run_dir / "train.log", "resumable state saved after epoch 2", process, timeout=TIMEOUT)
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
        said = finish(process, output)
    assert process.returncode == 0, said[-3000:]
    assert releaser.released, "the job was never requeued"
    return run_dir


def test_a_requeued_job_resumes_from_its_last_epoch_with_the_uninterrupted_numbers(requeued, reference):
    log = (requeued / "train.log").read_text()
    resumed = re.findall(r"resuming after epoch (\d+)", log)
    assert resumed and 2 <= int(resumed[0]) < 4, log[-3000:]  # not from zero
    same_numbers(requeued, reference)


# ---------------------------------------------------------------- 3. the time limit


@pytest.fixture(scope="module")
def timed_out(tmp_path_factory):
    """bert/cls, with wandb (offline), told twice that its time limit is near: SIGUSR2, what SLURM
    sends signal_delay_s before the limit. The test sends it (`scancel --signal=USR2`, as submitit's
    own tests do) after epochs 1 and 3: a real 1-minute limit gets its signal from SLURM's 30 s timer
    anywhere in the first minute, and a restart takes ~20 s on this shared core, so a real limit
    test takes minutes and flakes. Any timeout_min under 10 makes submitit count a SIGUSR2 as a time-out."""
    sweep_dir = tmp_path_factory.mktemp("timed_out") / "sweep"
    output = sweep_dir.parent / "launcher.out"
    with ReleaseRequeued() as releaser:
        process = start(
            *SLURM,
            *CELL,
            "model=bert",
            "pooling=cls",
            "hydra.launcher.timeout_min=5",
            "hydra.launcher.signal_delay_s=30",
            "hydra.launcher.max_num_timeout=2",
            f"hydra.sweep.dir={sweep_dir}",
            stdout=output,
        )
        run_dir = sweep_dir / BERT_CLS
        job = job_id(run_dir, process)
        for epoch in (1, 3):
            wait_for_log(run_dir / "train.log", f"resumable state saved after epoch {epoch}", process, timeout=TIMEOUT)
            subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
        said = finish(process, output)
    assert process.returncode == 0, said[-3000:]
    return run_dir, len(releaser.released)


def test_a_job_at_its_time_limit_is_requeued_by_submitit_and_completes(timed_out, reference):
    run_dir, releases = timed_out
    log = (run_dir / "train.log").read_text()
    assert log.count("this job is timed-out") == 2 and "Requeued job" in log and releases == 2
    first, second = (int(e) for e in re.findall(r"resuming after epoch (\d+)", log))
    assert 1 <= first < 3 <= second < 4, (first, second)  # from the last epoch, forward each time
    same_numbers(run_dir, reference)  # within max_num_timeout=2, as if never stopped


# ---------------------------------------------------------------- 4. SIGTERM to one job of two


def test_sigterm_to_one_job_of_an_array_and_the_rerun_completes_it(tmp_path, reference):
    sweep_dir = tmp_path / "sweep"
    overrides = [*SLURM, *CELL, "model=bert,modernbert", "pooling=cls", "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    output = tmp_path / "launcher.out"
    process = start(*overrides, stdout=output)
    stopped = sweep_dir / BERT_CLS
    other = sweep_dir / BERT_CLS.replace("model=bert", "model=modernbert")
    job = job_id(stopped, process)
    wait_for_log(stopped / "train.log", "resumable state saved after epoch 1", process, timeout=TIMEOUT)
    subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
    said = finish(process, output)
    assert process.returncode != 0
    assert "Traceback" not in said and "UncompletedJobError" not in said, said[-3000:]
    assert "did not complete" in said and stopped.name in said and other.name not in said.split("did not complete")[1]
    assert metrics(other)["status"] == "completed"
    assert metrics(stopped)["status"] == "interrupted" and "SIGTERM" in metrics(stopped)["error"]
    assert (stopped / "resume_state.pt").is_file()
    train_in_process(*overrides)  # the same command again
    assert re.search(r"resuming after epoch [1-3]", (stopped / "train.log").read_text())
    assert "skipped" in (other / "train.log").read_text()
    same_numbers(stopped, reference)


# ---------------------------------------------------------------- 5. a failing job


def test_a_failing_job_fails_alone_with_its_error(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = train(
        *SLURM,
        "experiment=smoke",
        "data.n_samples=1000",
        "trainer.epochs=1",
        "model=bert",
        "pooling=cls",
        "data.max_len=64,4096",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
        check=False,
        timeout=TIMEOUT,
    )
    said = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in said, said[-3000:]
    good, bad = (
        sweep_dir / f"data.max_len={n},data.n_samples=1000,experiment=smoke,model=bert,pooling=cls,trainer.epochs=1"
        for n in (64, 4096)
    )
    assert metrics(good)["status"] == "completed"
    failed = metrics(bad)
    assert failed["status"] == "failed" and "data.max_len=4096" in failed["error"]
    assert "did not complete" in said and bad.name in said


# ---------------------------------------------------------------- 6. one wandb run per cell


def test_each_restarted_cell_is_one_wandb_run_holding_every_epoch_once(requeued, timed_out):
    assert epochs_logged(requeued) == [1, 2, 3, 4]
    run_dir, _ = timed_out
    assert epochs_logged(run_dir) == [1, 2, 3, 4]
    assert summarize(requeued)["parts"] >= 2 and summarize(run_dir)["parts"] >= 2  # restarts continued the same run id


# ---------------------------------------------------------------- a job killed without warning


def test_a_job_killed_without_a_result_is_collected_not_waited_for_forever(tmp_path):
    """SIGKILL leaves no result, and this cluster has no accounting (sacct): the launcher reads the
    job's end from squeue, reports it, and the sweep exits non-zero instead of polling forever."""
    sweep_dir = tmp_path / "sweep"
    output = tmp_path / "launcher.out"
    overrides = [*SLURM, *CELL, "model=bert", "pooling=cls", "logger=none", f"hydra.sweep.dir={sweep_dir}"]
    # a 5 s grace for a job without a result (30 s unset): long enough for a result file on its way here
    process = start(*overrides, stdout=output, env=app_env(**{GRACE_ENV: "5"}))
    run_dir = sweep_dir / BERT_CLS
    job = job_id(run_dir, process)
    wait_for_log(run_dir / "train.log", "resumable state saved after epoch 1", process, timeout=TIMEOUT)
    listed = subprocess.run(["scontrol", "listpids", f"{job}.0"], capture_output=True, text=True, timeout=30).stdout
    pids = [int(line.split()[0]) for line in listed.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    assert pids, listed
    for pid in pids:
        os.kill(pid, 9)
    said = finish(process, output, timeout=120)
    assert process.returncode != 0 and "Traceback" not in said, said[-3000:]
    assert "ended without a result" in said and run_dir.name in said.split("did not complete")[1]
    assert metrics(run_dir)["status"] == "running" and (run_dir / "resume_state.pt").is_file()


# ---------------------------------------------------------------- the cluster itself

START = REPO / "tests" / "slurm" / "start.sh"


def saved_state_dir() -> Path:
    """Where the controller saves its state (start.sh's config sets it), as the controller says."""
    shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    return Path(re.search(r"^StateSaveLocation\s*=\s*(\S+)", shown, re.M).group(1))


def node_state():
    return subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30).stdout.strip()


def queued_jobs():
    return subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True, timeout=30).stdout.split()


def start_cluster():
    return subprocess.run([str(START)], capture_output=True, text=True, timeout=180)


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("restarting the cluster's daemons needs root, as tests/slurm/start.sh does")
    yield
    # whatever the test did, the tests after it get a running cluster with a free node
    subprocess.run(["scancel", "--user=root"], capture_output=True, timeout=30)
    start_cluster()


def test_start_frees_the_node_of_jobs_a_run_that_died_with_its_machine_left(as_root, tmp_path):
    """A CI or a session stopped mid-test stops every process at once; the controller's saved state
    brings the jobs back as running (or requeued) on the next start, and they held the node:
    start.sh failed after 60 s with the node `alloc`, and CI with it. It cancels them."""
    sleeper = "sleep 3171"  # a command no other process runs
    submitted = time.time()
    job = subprocess.run(
        ["sbatch", "--parsable", "-J", "left-behind", "-p", "debug", "-c", "1", "--mem=100M"]
        + ["-o", str(tmp_path / "job.out"), "--wrap", sleeper],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    for _ in range(60):
        if (
            subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
            == "RUNNING"
        ):
            break
        time.sleep(1)
    # the controller saves its state a moment after a change, later on a loaded machine (the other
    # xdist worker's tests): a fixed 2 s was too short once; wait until the job's state was saved since its submission
    job_state = saved_state_dir() / "job_state"
    for _ in range(300):
        if job_state.is_file() and job_state.stat().st_mtime > submitted:
            break
        time.sleep(0.1)
    time.sleep(0.5)
    for daemon in ("slurmctld", "slurmd", "slurmstepd"):  # the machine stops: everything dies at once
        subprocess.run(["pkill", "-KILL", "-x", daemon], timeout=30)
    subprocess.run(["pkill", "-KILL", "-f", sleeper], timeout=30)

    started = start_cluster()
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"cancelling jobs left by an earlier run: {job}" in started.stdout
    assert node_state() == "idle" and job not in queued_jobs()


def test_start_resumes_a_node_drained_by_a_job_it_could_not_kill(as_root):
    """A job whose processes outlive its end drains the node (`Kill task failed`); the node would
    stay closed to every job after it."""
    subprocess.run(["scontrol", "update", "NodeName=ALL", "State=DRAIN", "Reason=a test"], check=True, timeout=30)
    started = start_cluster()
    assert started.returncode == 0, started.stdout + started.stderr
    assert node_state() == "idle"
