"""hydra/sweeper=tune (sweep/launch/tune.py, sweep/launch/trial.py): a study per cell with the same budget, on
joblib workers, resumed after a kill without training anything twice, pruned where a trial lags,
and collect's tuned view with the expected best validation accuracy by budget."""

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from helpers.app import REPO, app_env, train_in_process
from helpers.rundirs import metrics, run_dirs
from sweep.collect import main as collect

LOG_LR = 'hydra.sweeper.params={optim.lr: "tag(log, interval(1e-4, 1e-1))"}'
SMALL = ["experiment=smoke", "data.n_samples=400", "logger=none"]  # ~0.4 s an epoch


def studies(sweep_dir):
    """{cell: its trials} as the sweep's journal holds them."""
    import optuna

    from sweep.launch.tune import journal_storage

    storage = journal_storage(sweep_dir)
    return {
        summary.study_name: optuna.load_study(study_name=summary.study_name, storage=storage).get_trials()
        for summary in optuna.get_all_study_summaries(storage)
    }


def statuses(sweep_dir, status, resumable=False):
    """The run dirs of the sweep whose metrics.json says status (and that hold a resumable state)."""
    found = []
    for metrics_file in sweep_dir.glob("*/metrics.json"):
        try:
            said = metrics(metrics_file.parent).get("status")
        except ValueError:  # being rewritten
            continue
        if said == status and (not resumable or (metrics_file.parent / "resume_state.pt").is_file()):
            found.append(metrics_file.parent)
    return found


def epoch_lines(run_dir, epochs):
    log = (run_dir / "train.log").read_text()
    return [log.count(f"epoch {k}/{epochs} ") for k in range(1, epochs + 1)]


@pytest.mark.slow
def test_two_cells_of_six_trials_on_joblib_resume_after_a_kill_and_collect_the_tuned_view(tmp_path):
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        str(REPO / "sweep" / "train.py"),
        "-m",
        "hydra/sweeper=tune",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.sampler=random",
        LOG_LR,
        "model=bert,modernbert",
        *SMALL,
        "trainer.epochs=2",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    # the first run, killed (the whole process group: the sweeper and its workers) once 4 trials
    # finished while another is between its two epochs
    first = subprocess.Popen(command, cwd=REPO, env=app_env(), start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (len(statuses(sweep_dir, "completed")) >= 4 and statuses(sweep_dir, "running", resumable=True)):
        assert first.poll() is None and time.time() < deadline, first.stderr.read().decode()[-3000:]
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGTERM)
    first.wait(timeout=60)
    finished = {
        d.name: (d / "metrics.json").stat().st_mtime for d in run_dirs(sweep_dir) if metrics(d)["status"] == "completed"
    }
    assert 4 <= len(finished) < 12

    train_in_process(*command[3:])  # the rerun: in this process (its joblib workers are still processes)
    trials = studies(sweep_dir)
    assert sorted(trials) == ["model=bert", "model=modernbert"]
    for cell, cell_trials in trials.items():  # exactly the budget, every trial finished, inside its bounds
        assert [t.state.name for t in cell_trials] == ["COMPLETE"] * 6, cell
        # the interrupted ones went on as the same trials, in the same run dirs
        assert [t.number for t in cell_trials] == list(range(6))
        assert sorted(t.user_attrs["slot"] for t in cell_trials) == list(range(6))
        assert all(1e-4 <= t.params["optim.lr"] <= 1e-1 for t in cell_trials)
    # the same sampler seed: trial K of each cell tried the same lr; on a log scale they spread over
    # the decades (uniform draws over 1e-4..1e-1 would put ~90% of them in the top decade)
    lrs = [sorted(t.params["optim.lr"] for t in trials[cell]) for cell in sorted(trials)]
    assert lrs[0] == lrs[1]
    assert len({math.floor(math.log10(lr)) for lr in lrs[0]}) >= 2 and min(lrs[0]) < 1e-2
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 12 and all(metrics(d)["status"] == "completed" for d in dirs)
    for d in dirs:  # none trained twice: each epoch of each run logged once, finished ones untouched
        assert epoch_lines(d, 2) == [1, 1], d.name
        assert metrics(d)["trial"].startswith(f"model={metrics(d)['model']}#")
    assert all((sweep_dir / name / "metrics.json").stat().st_mtime == mtime for name, mtime in finished.items())
    assert "resuming after epoch 1" in "".join((d / "train.log").read_text() for d in dirs)

    out = tmp_path / "table"
    assert collect([str(sweep_dir), "--out", str(out)]) == 0
    tuned = pd.read_csv(out / "tuned.csv")
    assert sorted(tuned["model"]) == ["bert", "modernbert"]  # one row per cell: its best trial
    for _, row in tuned.iterrows():
        valid = [metrics(d)["valid/acc"] for d in dirs if metrics(d)["model"] == row["model"]]
        assert row["valid/acc"] == pytest.approx(max(valid))
    curves = pd.read_csv(out / "expected_max_valid.csv")
    assert list(curves.columns) == ["cell", "n", "expected_max_valid", "std"]
    for cell, curve in curves.groupby("cell"):
        valid = [metrics(d)["valid/acc"] for d in dirs if f"model={metrics(d)['model']}" in cell]
        assert list(curve["n"]) == list(range(1, 7))
        assert curve["expected_max_valid"].iloc[0] == pytest.approx(np.mean(valid))
        assert curve["expected_max_valid"].iloc[-1] <= max(valid) + 1e-12
    assert (out / "expected_max_valid.png").stat().st_size > 1000
    markdown = (out / "comparison.md").read_text()
    assert "Tuned view" in markdown and "Expected best valid acc by tuning budget" in markdown
    # the report page: the budget curves and what mattered, per cell, from the sweep's journal
    importance = pd.read_csv(out / "importance.csv")
    assert sorted(importance["cell"]) == ["model=bert", "model=modernbert"] and set(importance["knob"]) == {"optim.lr"}
    assert importance["importance"].tolist() == pytest.approx([1.0, 1.0])  # the one knob searched: all of it
    page = (out / "report.html").read_text()
    assert "Budget curves" in page and "What mattered in the tuning" in page and "6 finished trials" in page
    assert all((out / f"parallel_{n}.png").stat().st_size > 1000 for n in (1, 2))


def test_the_knob_that_drives_the_objective_gets_the_importance(tmp_path):
    """importance.csv and the parallel coordinates from a journal as the tune sweeper writes it: one cell's
    study where the score follows the learning rate and not the dropout (no training: the trials are told)."""
    import random

    import optuna

    from sweep.launch.tune import journal_storage
    from sweep.report.importance import tuning_report

    rng = random.Random(0)
    study = optuna.create_study(study_name="model=bert", storage=journal_storage(tmp_path), direction="maximize")
    space = {"optim.lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
             "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.3)}  # fmt: skip
    for _ in range(30):
        trial = study.ask(space)
        study.tell(trial, 0.9 - 0.1 * abs(math.log10(trial.params["optim.lr"]) + 4) + rng.gauss(0, 0.002))
    flat = optuna.create_study(study_name="model=modernbert", storage=journal_storage(tmp_path))
    for _ in range(5):  # every trial scored alike: nothing to share out, said instead of a crash
        flat.tell(flat.ask(space), 0.5)
    entries = tuning_report([tmp_path / "tune.journal"], tmp_path)
    assert [(e["cell"], e["trials"]) for e in entries] == [("model=bert", 30), ("model=modernbert", 5)]
    assert entries[1]["note"].startswith("no importance: RuntimeError") and "plot" not in entries[1]
    found = pd.read_csv(tmp_path / "importance.csv").set_index("knob")["importance"]
    assert found["optim.lr"] > 0.8 > found["model.dropout"] and found.sum() == pytest.approx(1.0)
    assert (tmp_path / entries[0]["plot"]).stat().st_size > 1000


@pytest.mark.slow
def test_median_pruning_trains_far_fewer_epochs_for_the_same_best(tmp_path):
    """A space reaching learning rates at which the tiny models diverge: the median pruner stops
    those trials after an epoch or two, and the best trial is as good as without pruning."""
    runs = {}
    for pruner in ("none", "median"):
        sweep_dir = tmp_path / pruner
        train_in_process(
            "hydra/sweeper=tune",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.sampler=random",
            "hydra.sweeper.seed=4",  # its first two trials: one lr that learns, one that diverges
            f"hydra.sweeper.pruner={pruner}",
            'hydra.sweeper.params={optim.lr: "tag(log, interval(1e-3, 10.0))"}',
            "model=bert",
            *SMALL,
            "trainer.epochs=4",
            f"hydra.sweep.dir={sweep_dir}",
        )
        runs[pruner] = [metrics(d) for d in run_dirs(sweep_dir)]
    epochs = {pruner: sum(m["epochs_run"] for m in ran) for pruner, ran in runs.items()}
    best = {pruner: max(m["valid/acc"] for m in ran) for pruner, ran in runs.items()}
    assert epochs["median"] <= 0.7 * epochs["none"], epochs
    assert abs(best["median"] - best["none"]) <= 0.01, best
    pruned = [m for m in runs["median"] if m["status"] == "pruned"]
    assert pruned and all(m["epochs_run"] < 4 and "median pruner" in m["pruned"] for m in pruned)
    for d in run_dirs(tmp_path / "median"):
        if metrics(d)["status"] == "pruned":  # its history, no test pass, nothing left to resume
            assert len(pd.read_csv(d / "history.csv")) == metrics(d)["epochs_run"]
            assert not (d / "predictions_test.parquet").exists() and not (d / "resume_state.pt").exists()
    assert [t.state.name for t in studies(tmp_path / "median")["all"]].count("PRUNED") == len(pruned)

    out = tmp_path / "table"
    assert collect([str(tmp_path / "median"), "--out", str(out)]) == 0
    markdown = (out / "comparison.md").read_text()
    listed = markdown.split("## Runs not in the table")[1].split("##")[0]
    assert listed.count("| pruned |") == len(pruned)  # listed, not ranked


def test_bad_tune_settings_name_the_value_and_what_is_accepted(tmp_path):
    for setting, said in (
        ("hydra.sweeper.sampler=grid", "hydra.sweeper.sampler=grid: use one of tpe, random"),
        (
            "hydra.sweeper.pruner=hyperband",
            "hydra.sweeper.pruner=hyperband: use one of none, median, successive_halving",
        ),
    ):
        result = train_in_process(
            "hydra/sweeper=tune", setting, LOG_LR, f"hydra.sweep.dir={tmp_path / 'a'}", check=False
        )
        assert result.returncode != 0 and said in result.stderr, result.stderr
    for params, said in (
        ('{optim.lr: "tag(log, interval(0, 1e-3))"}', "optim.lr"),
        ('{optim.lr: "5e-5"}', "is not a search space"),
        ('{optim.lr: "interval(1e-3"}', "cannot parse"),
    ):
        result = train_in_process(
            "hydra/sweeper=tune", f"hydra.sweeper.params={params}", f"hydra.sweep.dir={tmp_path / 'b'}", check=False
        )
        assert result.returncode != 0 and said in result.stderr and "interval(a, b)" in result.stderr, result.stderr
    result = train_in_process("hydra/sweeper=tune", f"hydra.sweep.dir={tmp_path / 'c'}", check=False)
    assert result.returncode != 0 and "nothing to tune" in result.stderr
    assert not list(tmp_path.glob("*/*/metrics.json"))  # nothing ran


def test_the_learning_rate_preset_searches_fine_tunings_usual_range_on_a_log_scale():
    from optuna.distributions import FloatDistribution

    from helpers.rundirs import compose_config
    from sweep.launch.tune import space_of

    sweeper = compose_config("hydra/sweeper=tune_lr", hydra_node=True).hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.encoder_sweep.TuneSweeper" and sweeper.n_trials == 8
    assert space_of(sweeper.params, []) == {"optim.lr": FloatDistribution(1e-5, 1e-4, log=True)}
