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

from conftest import TIMING_KEYS, compose_config, evaluate_best, metrics
from sweep import runner
from sweep.runner import RunInterrupted, run

# so little data that validation stops improving after epoch 1 (epoch 2 ties it): patience 1 stops there
TINY = ["experiment=smoke", "model=bert", "logger=none", "data.n_samples=400", "trainer.batch_size=28",
        "data.eval_batch_size=16"]
EARLY_STOPPING = [*TINY, "trainer.epochs=4", "trainer.early_stopping_patience=1"]


def run_saving_config(overrides, run_dir):
    """run() as a job does, with the config saved where evaluate_best reads it (Hydra's record)."""
    cfg = compose_config(*overrides)
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    return run(cfg, run_dir)


def sigterm_during_test_pass(monkeypatch):
    """The test pass receives SIGTERM (pre-emption) after its first batch of work has started."""
    real_evaluate = runner.evaluate

    def evaluate(forward, loader, device, desc="eval", precision=None):
        if desc.startswith("test"):
            os.kill(os.getpid(), signal.SIGTERM)
        return real_evaluate(forward, loader, device, desc=desc, precision=precision)

    monkeypatch.setattr(runner, "evaluate", evaluate)


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
        stopped_early, tmp_path, monkeypatch):
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
    for key in uninterrupted.keys() - TIMING_KEYS - {"compile_seconds"}:
        assert resumed[key] == uninterrupted[key], key
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "predictions_test.parquet"),
                                  pd.read_parquet(stopped_early / "predictions_test.parquet"))

