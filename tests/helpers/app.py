"""The train app as the tests run it: in this process through its real Hydra entry point (the
default: it skips ~6-10 s of imports per run), or as a subprocess where the behaviour under test
is the process's own (signals, launchers, exit codes, terminal output)."""

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sweep.rundir import TIMING_FIELDS

REPO = Path(__file__).resolve().parents[2]
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"
TIMING_KEYS = set(TIMING_FIELDS)  # the only metrics that differ between identical runs
SMOKE_GRID = ["model=bert,modernbert", "pooling=cls,mean", "experiment=smoke"]
QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}

needs_imdb = pytest.mark.skipif(
    not (IMDB_DIR / "train.parquet").is_file(),
    reason=f"the real IMDB parquet files are not at {IMDB_DIR} (they exist only inside this workplace)",
)


def app_env(**extra) -> dict:
    """A subprocess's environment, as a user's shell gives it: without the address of the wandb
    service an in-process run started here (WANDB_SERVICE), so that a killed subprocess's wandb
    run is not left open in this process's service (a resume here would find its id in use)."""
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    return {**env, **QUIET_ENV, **extra}


def train(*overrides: str, multirun: bool = True, check: bool = True, timeout: int = 600, env=None):
    """Runs `python sweep/train.py [-m] overrides...` from the repo root as a subprocess, as a user would."""
    cmd = [sys.executable, str(REPO / "sweep" / "train.py")] + (["-m"] if multirun else []) + list(overrides)
    result = subprocess.run(cmd, cwd=REPO, env=env or app_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


@dataclass
class InProcessResult:
    """What subprocess.run(capture_output=True) would have given for the same command."""

    returncode: int
    stdout: str
    stderr: str


def train_in_process(*overrides: str, multirun: bool = True, check: bool = True) -> InProcessResult:
    """Runs the app's own @hydra.main entry (`sweep.train.main`) in this process with these
    overrides: the real Hydra run (.hydra/, multirun.yaml, sweep subdirs, callbacks, the job log)
    without a new interpreter. Its console output is captured as a subprocess's would be; Hydra's
    global state, the logging it configures and torch's thread count are put back afterwards, so
    that the next test starts as it would in a fresh process."""
    import torch
    from hydra.core.global_hydra import GlobalHydra

    from sweep.train import main

    cli = ["-m"] if multirun else []
    argv, threads = sys.argv, torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stdout, stderr, returncode = io.StringIO(), io.StringIO(), 0
    GlobalHydra.instance().clear()
    try:
        sys.argv = [str(REPO / "sweep" / "train.py"), *cli, *overrides]
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
    except SystemExit as exit_:  # Hydra's error report, the FailedJobs callback, an InputError
        if isinstance(exit_.code, str):
            stderr.write(exit_.code + "\n")
        returncode = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:], root.level = handlers, level
        torch.set_num_threads(threads)
    result = InProcessResult(returncode, stdout.getvalue(), stderr.getvalue())
    if check and returncode != 0:
        raise AssertionError(f"sweep/train.py {' '.join(overrides)} exited {returncode}\n{result.stderr[-6000:]}")
    return result


def start(*overrides, stdout=None, env=None):
    """Starts a sweep as a subprocess; its stdout (where Hydra logs) goes to the file stdout, if given."""
    cmd = [sys.executable, str(REPO / "sweep" / "train.py"), "-m", *overrides]
    out = open(stdout, "w") if stdout else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=REPO, env=env or app_env(), stdout=out, stderr=subprocess.PIPE, text=True)


def wait_for_log(path, text, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and text in path.read_text():
            return
        assert process.poll() is None, f"the run ended before '{text}': {process.stderr.read()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"'{text}' never appeared in {path}")


def kill_after_epoch(tmp_path: Path, overrides, epoch: int = 1):
    """Runs the overrides once uninterrupted (in-process), and once as a subprocess killed (SIGKILL)
    right after `epoch`'s resumable state was saved. Returns (the killed run's dir, the
    uninterrupted run's dir)."""
    from helpers.rundirs import run_dirs

    reference_dir, stopped_dir = tmp_path / "reference", tmp_path / "stopped"
    train_in_process(*overrides, f"hydra.sweep.dir={reference_dir}")
    reference = run_dirs(reference_dir)[0]
    process = start(*overrides, f"hydra.sweep.dir={stopped_dir}")
    run_dir = stopped_dir / reference.name
    wait_for_log(run_dir / "train.log", f"resumable state saved after epoch {epoch}", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return run_dir, reference
