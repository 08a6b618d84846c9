"""Early stopping and the best checkpoint across an interruption: a resumed run stops where the
uninterrupted one stopped, reloads best/ from disk when its best epoch is earlier than the
interruption, and a crash at any point of an epoch's writes never leaves best/ holding another
epoch than the one the run reports as best. Runs in-process on a tiny model and 400 generated
reviews (a few seconds an epoch); interruptions are a real SIGTERM or an exception at the
exact point a crash would hit."""

import os
import signal

import pandas as pd
import pytest
from omegaconf import OmegaConf

from helpers.app import TIMING_KEYS
from helpers.rundirs import compose_config, evaluate_best, metrics
from sweep.fit import loop, trainer
from sweep.fit.resume import ResumeState
from sweep.job.runner import run
from sweep.launch.interrupts import RunInterrupted
from sweep.model.classifier import Classifier
from sweep.rundir import CLASSIFIER_FILE, read_json

# so little data that validation stops improving after epoch 1 (epoch 2 ties it): patience 1 stops there
TINY = [
    "experiment=smoke",
    "model=bert",
    "logger=none",
    "data.n_samples=400",
    "trainer.batch_size=28",
    "data.eval_batch_size=16",
]
EARLY_STOPPING = [*TINY, "trainer.epochs=4", "trainer.early_stopping_patience=1"]


def run_saving_config(overrides, run_dir):
    """run() as a job does, with the config saved where evaluate_best reads it (Hydra's record)."""
    cfg = compose_config(*overrides)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run(cfg, run_dir)


def sigterm_during_test_pass(monkeypatch):
    """The test pass receives SIGTERM (pre-emption) after its first batch of work has started."""
    real_evaluate = trainer.evaluate

    def evaluate(forward, loader, device, desc="eval", precision=None, task=None):
        if desc.startswith("test"):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(forward, loader, device, desc=desc, precision=precision, task=task)

    monkeypatch.setattr(trainer, "evaluate", evaluate)


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory):
    """The uninterrupted early-stopping run."""
    run_dir = tmp_path_factory.mktemp("early") / "run"
    run_saving_config(EARLY_STOPPING, run_dir)
    return run_dir


def test_patience_1_stops_after_the_first_epoch_without_a_better_valid_acc(stopped_early):
    m = metrics(stopped_early)
    history = pd.read_csv(stopped_early / "history.csv")
    assert m["status"] == "completed" and m["epochs_run"] < 4, m
    assert len(history) == m["epochs_run"] == m["best_epoch"] + 1  # one stale epoch, then stop
    assert history["valid/acc"].iloc[-1] <= history["valid/acc"].iloc[:-1].max()


def test_a_run_interrupted_in_its_test_pass_resumes_to_the_same_early_stop_and_best_checkpoint(
    stopped_early, tmp_path, monkeypatch
):
    """SIGTERM in the test pass, after the early stop: the rerun must not train another epoch, and
    must test the best checkpoint it reloads from best/ (its best epoch is before the last one)."""
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patched:
        sigterm_during_test_pass(patched)
        with pytest.raises(RunInterrupted):
            run_saving_config(EARLY_STOPPING, run_dir)
    assert metrics(run_dir)["status"] == "interrupted"
    run_saving_config(EARLY_STOPPING, run_dir)
    resumed, uninterrupted = metrics(run_dir), metrics(stopped_early)
    assert resumed["best_epoch"] < resumed["epochs_run"]  # best/ came from disk, not from the last epoch
    assert read_json(run_dir / "best" / CLASSIFIER_FILE)["epoch"] == resumed["best_epoch"]
    for key in uninterrupted.keys() - TIMING_KEYS - {"compile_seconds"}:
        assert resumed[key] == uninterrupted[key], key
    pd.testing.assert_frame_equal(
        pd.read_parquet(run_dir / "predictions_test.parquet"),
        pd.read_parquet(stopped_early / "predictions_test.parquet"),
    )


# ------------------------------------------------ a crash between best/ and the resumable state


def scripted_valid_acc(monkeypatch, accuracies):
    """valid/acc per validation pass as listed (the losses stay real): the first run improves at
    epoch 2, the rerun of epoch 2 after a crash does not, as a rerun on a GPU may well differ."""
    real_evaluate, script = loop.evaluate, iter(accuracies)

    def evaluate(forward, loader, device, desc="eval", precision=None, task=None):
        result = real_evaluate(forward, loader, device, desc=desc, precision=precision, task=task)
        return {**result, "acc": next(script)} if desc.endswith("valid") else result

    monkeypatch.setattr(loop, "evaluate", evaluate)


def crash_on_call(monkeypatch, owner, name, call):
    """The `call`-th call of owner.name dies as a killed process would, before it has written anything."""
    real, calls = getattr(owner, name), []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise RunInterrupted("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, crashing)


# where epoch 2's writes die: saving the resumable state, or saving best/ (the second best/ write)
CRASH_POINTS = {"resume state": (ResumeState, "save", 2), "best/": (Classifier, "save_pretrained", 2)}


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_a_crash_between_best_and_the_resume_state_leaves_best_holding_the_reported_best_epoch(
    crash_point, tmp_path, monkeypatch
):
    run_dir, overrides = tmp_path / "run", [*TINY, "trainer.epochs=2"]
    with monkeypatch.context() as patched:
        scripted_valid_acc(patched, [0.6, 0.8])
        crash_on_call(patched, *CRASH_POINTS[crash_point])
        with pytest.raises(RunInterrupted):
            run_saving_config(overrides, run_dir)
    with monkeypatch.context() as patched:
        scripted_valid_acc(patched, [0.5])  # only a rerun epoch 2 validates
        run_saving_config(overrides, run_dir)
    m, history = metrics(run_dir), pd.read_csv(run_dir / "history.csv")
    assert m["status"] == "completed" and m["epochs_run"] == 2
    assert read_json(run_dir / "best" / CLASSIFIER_FILE)["epoch"] == m["best_epoch"]
    best_row = history[history["epoch"] == m["best_epoch"]].iloc[0]
    reloaded = evaluate_best(run_dir, "valid", batch_size=16)
    assert reloaded["loss"] == pytest.approx(best_row["valid/loss"], rel=1e-5)  # best/ holds that epoch's weights
