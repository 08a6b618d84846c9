"""sweep/collect.py on real run dirs of a smoke sweep (and copies of them, edited the way crashes,
kills and hand-made predictions leave them): the cells, the seed statistics, the paired tests, the
plots, the incomplete runs, and the CLI's errors."""

import importlib
import json
import os
import shutil
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.app import REPO
from helpers.run_edits import REMOVE, age, copy_tree, edit_config, edit_metrics, reseed, write_predictions
from helpers.rundirs import metrics as read_metrics
from helpers.rundirs import run_dirs
from sweep.report.cli import main
from sweep.report.stats import MCNEMAR, PINNED_T, SEEDS_T, holm

METRIC_KEYS = [
    "train/acc",
    "valid/acc",
    "test/acc",
    "test/f1",
    "best_epoch",
    "train_seconds",
    "train_samples_per_s",
    "test_samples_per_s",
    "peak_memory_mib",
    "params",
]


def collect(capsys, *argv):
    """main(argv) in-process, with --format json: (exit code, parsed stdout or None, stderr)."""
    code = main([*map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def by_cell(records):
    return {(r["model"], r["pooling"]): r for r in records}


@pytest.fixture(scope="module")
def sweep(seeds_sweep):
    return seeds_sweep


@pytest.fixture()
def sweep_copy(sweep, tmp_path):
    return copy_tree(sweep, tmp_path / "sweep")


def test_one_seed_each_gives_four_cells_with_the_values_of_metrics_json(sweep, tmp_path, capsys):
    runs = [d for d in run_dirs(sweep) if read_metrics(d)["seed"] == 1]
    assert len(runs) == 4
    code, result, _ = collect(capsys, *runs, "--out", tmp_path)
    assert code == 0
    cells = by_cell(result["cells"])
    assert set(cells) == {(m, p) for m in ("bert", "modernbert") for p in ("cls", "mean")}
    summary = pd.read_csv(tmp_path / "summary.csv")
    per_run = pd.read_csv(tmp_path / "comparison.csv")
    assert len(summary) == 4 and len(per_run) == 4
    for run in runs:
        metrics = read_metrics(run)
        cell = cells[(metrics["model"], metrics["pooling"])]
        assert cell["n"] == 1
        for key in METRIC_KEYS:
            assert cell[key] == pytest.approx(metrics[key], rel=1e-12)
            row = summary[(summary.model == metrics["model"]) & (summary.pooling == metrics["pooling"])].iloc[0]
            assert row[key] == pytest.approx(metrics[key], rel=1e-12)
            assert per_run.loc[per_run.run_dir == str(run), key].item() == pytest.approx(metrics[key], rel=1e-12)
        # one seed: a bootstrap CI around the test accuracy of its predictions
        assert cell["test/acc_ci_low"] < metrics["test/acc"] < cell["test/acc_ci_high"]
    markdown = (tmp_path / "comparison.md").read_text()
    first = read_metrics(runs[0])
    assert (
        f"| {first['model']} | {first['pooling']} | 1 | {first['train/acc']:.4f} | {first['valid/acc']:.4f} |"
        in markdown
    )


def test_seeds_fold_into_one_cell_with_mean_and_sample_std(sweep_copy, capsys):
    sweep = sweep_copy  # the tables go into the sweep dir: keep the shared sweep clean
    code, result, _ = collect(capsys, sweep)
    assert code == 0
    cells = by_cell(result["cells"])
    assert len(cells) == 4
    for (model, pooling), cell in cells.items():
        values = [
            read_metrics(d)
            for d in run_dirs(sweep)
            if read_metrics(d)["model"] == model and read_metrics(d)["pooling"] == pooling
        ]
        assert cell["n"] == 2 and sorted(m["seed"] for m in values) == [1, 2]
        for key in ("test/acc", "valid/acc", "train_seconds"):
            column = [m[key] for m in values]
            assert cell[key] == pytest.approx(np.mean(column))
            assert cell[f"{key}_std"] == pytest.approx(np.std(column, ddof=1))
        assert cell["test/acc_ci_low"] is None  # several seeds: the spread is the std, not a CI
    # written into the sweep dir by default; every pair of cells is tested on 2 seed-matched pairs, each on
    # its own split (split_seed follows seed): a paired t over seeds, its verdict Holm-corrected over the 6
    assert (sweep / "comparison.md").is_file() and (sweep / "summary.csv").is_file()
    tests = result["significance"]
    assert len(tests) == 6 and all(r["seed_pairs"] == 2 and r["test"] == SEEDS_T for r in tests)
    assert [r["p_holm"] for r in tests] == pytest.approx(list(holm([r["p_value"] for r in tests])))
    assert all(r["significant"] == (r["p_holm"] < 0.05) for r in tests)
    markdown = (sweep / "comparison.md").read_text()
    assert "± " in markdown and f"**{SEEDS_T}** (6 pairs of cells)" in markdown
    assert "It tests the configurations" in markdown
    assert "Holm's correction over all 6 comparisons at 0.05" in markdown


def test_cells_come_from_the_configs_not_from_dir_names(sweep, tmp_path, capsys):
    """A key that varies (optim.lr) splits cells; keys that cannot change a result (logger, trainer.resume)
    and keys that follow the model (model.id, model.family) do not; dir names are never read."""
    for run in (d for d in run_dirs(sweep) if read_metrics(d)["seed"] == 1):
        copy_tree(run, tmp_path / "runs" / f"a-{run.name}")
        other = copy_tree(run, tmp_path / "runs" / f"b-{run.name}")
        config = yaml.safe_load((other / ".hydra" / "config.yaml").read_text())
        config["optim"]["lr"], config["logger"]["trackers"], config["trainer"]["resume"] = 1e-4, ["mlflow"], False
        (other / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    code, result, _ = collect(capsys, tmp_path / "runs", "--out", tmp_path / "out")
    assert code == 0
    assert list(result["cells"][0])[:4] == ["model", "pooling", "optim.lr", "n"]  # the cell keys, then the numbers
    assert {(c["model"], c["pooling"], c["optim.lr"]) for c in result["cells"]} == {
        (m, p, lr) for m in ("bert", "modernbert") for p in ("cls", "mean") for lr in (0.002, 1e-4)
    }
    assert not any(k.startswith(("logger", "trainer", "model.", "data.")) for k in result["cells"][0])


def test_one_run_per_cell_compares_trained_models_with_mcnemar_and_says_so(sweep_copy, tmp_path, capsys):
    runs = [d for d in run_dirs(sweep_copy) if read_metrics(d)["seed"] == 1]
    label = np.arange(100) % 2
    wrong_on_10 = label.copy()
    wrong_on_10[:10] = 1 - wrong_on_10[:10]
    for run, pred in zip(
        runs, [label, wrong_on_10, label, label]
    ):  # bert/cls, bert/mean, modernbert/cls, modernbert/mean
        write_predictions(run, label, pred)
    code, result, _ = collect(capsys, *runs, "--out", tmp_path)
    assert code == 0
    tests = {(r["A"], r["B"]): r for r in result["significance"]}
    assert all(r["test"] == MCNEMAR for r in tests.values())
    known = tests[("model=bert, pooling=cls", "model=bert, pooling=mean")]
    assert (known["b"], known["c"], known["examples"]) == (10, 0, 100)
    assert known["p_value"] == pytest.approx(2 / 1024) and known["acc_diff"] == pytest.approx(0.1)
    # three pairs at p = 2/1024 and three at 1 among 6 comparisons: Holm multiplies the smallest by 6
    assert known["p_holm"] == pytest.approx(6 * 2 / 1024) and known["significant"]
    same = tests[("model=bert, pooling=cls", "model=modernbert, pooling=cls")]
    assert (same["b"], same["c"], same["p_value"], same["p_holm"], same["significant"]) == (0, 0, 1.0, 1.0, False)
    markdown = (tmp_path / "comparison.md").read_text()
    assert "these two trained models differ" in markdown and "does not test the configurations" in markdown
    assert (
        "Trained models that differ (one run per cell: not evidence that one configuration is better): "
        "model=bert, pooling=cls vs model=bert, pooling=mean (+0.1000, p_holm=0.01172)"
    ) in markdown
    assert "Configurations that differ" not in markdown
    assert pd.read_csv(tmp_path / "significance.csv").columns[:3].tolist() == ["A", "B", "test"]


def test_seeds_on_a_pinned_test_set_use_the_seed_aware_test(sweep_copy, tmp_path, capsys):
    """Every run predicts one shared test set (a fixed data.split_seed): not McNemar over the pooled
    seeds, but the paired t over seeds widened by the per-example differences that persist."""
    rng = np.random.default_rng(0)
    label = np.arange(400) % 2
    for run in run_dirs(sweep_copy):
        write_predictions(run, label, np.where(rng.random(400) < 0.85, label, 1 - label))
    code, result, _ = collect(capsys, sweep_copy, "--out", tmp_path)
    assert code == 0
    assert len(result["significance"]) == 6
    assert all(r["test"] == PINNED_T and r["seed_pairs"] == 2 and r["examples"] == 400 for r in result["significance"])
    markdown = (tmp_path / "comparison.md").read_text()
    assert f"**{PINNED_T}** (6 pairs of cells)" in markdown and "No difference is significant at 0.05" in markdown


def test_plots_exist_and_hold_one_line_per_run(sweep, tmp_path, capsys):
    code, result, _ = collect(capsys, sweep, "--out", tmp_path)
    assert code == 0
    for name in ("valid_acc.png", "train_loss.png", "test_acc.png"):
        image = mpimg.imread(tmp_path / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({name})" in (tmp_path / "comparison.md").read_text()
    plots = json.loads((tmp_path / "plots.json").read_text())
    runs = run_dirs(sweep)
    for name, column in (("valid_acc.png", "valid/acc"), ("train_loss.png", "train/loss")):
        lines = plots[name]["lines"]
        assert sorted(line["run_dir"] for line in lines) == sorted(map(str, runs))  # one line per run
        for line in lines:
            history = pd.read_csv(os.path.join(line["run_dir"], "history.csv"))
            metrics = read_metrics(line["run_dir"])
            assert line["label"] == f"model={metrics['model']}, pooling={metrics['pooling']}"
            assert line["x"] == history["epoch"].tolist() and line["y"] == pytest.approx(history[column].tolist())
    bars = {bar["label"]: bar for bar in plots["test_acc.png"]["bars"]}
    assert len(bars) == 4
    for cell in result["cells"]:
        bar = bars[f"model={cell['model']}, pooling={cell['pooling']}"]
        assert bar["value"] == pytest.approx(cell["test/acc"]) and bar["err_high"] == pytest.approx(
            cell["test/acc_std"]
        )


def test_failed_killed_and_missing_runs_are_listed_and_the_rest_collected(sweep_copy, capsys):
    runs = run_dirs(sweep_copy)
    failed, killed, never_started = runs[0], runs[3], runs[5]
    edit_metrics(failed, status="failed", error="RuntimeError: CUDA out of memory\nTraceback ...")
    (killed / "metrics.json").unlink()
    swept = [
        o
        for o in (never_started / ".hydra" / "overrides.yaml").read_text().split()
        if o.startswith(("model=", "pooling=", "seed="))
    ]
    shutil.rmtree(never_started)
    code, result, err = collect(capsys, sweep_copy)
    assert code == 0
    assert sum(cell["n"] for cell in result["cells"]) == 5 and len(result["cells"]) == 4
    listed = {row["status"]: row for row in result["not_in_table"]}
    assert set(listed) == {"failed", "incomplete", "missing"}
    assert (
        listed["failed"]["run_dir"] == str(failed) and listed["failed"]["error"] == "RuntimeError: CUDA out of memory"
    )
    assert listed["incomplete"]["run_dir"] == str(killed) and "no metrics.json" in listed["incomplete"]["error"]
    assert sorted(listed["missing"]["overrides"].split()) == sorted(swept)  # named by multirun.yaml's grid
    assert "3 of 8 runs not in the table" in err
    markdown = (sweep_copy / "comparison.md").read_text()
    assert "## Runs not in the table (3)" in markdown
    assert f"| {failed.name} | model=" in markdown and "| failed | RuntimeError: CUDA out of memory |" in markdown
    assert f"| {killed.name} |" in markdown and "| incomplete | no metrics.json" in markdown
    assert "| missing | no run dir" in markdown


def test_no_argument_collects_the_latest_sweep_and_all_collects_every_run(sweep, tmp_path, capsys, monkeypatch):
    day = tmp_path / "outputs" / "multirun" / "2026-01-01"
    old = copy_tree(sweep, day / "09-00-00")
    new = copy_tree(sweep, day / "10-00-00")
    for run in run_dirs(old)[:4]:
        shutil.rmtree(run)
    for run, seconds in [(run, 3600) for run in run_dirs(old)] + [(run, 600) for run in run_dirs(new)]:
        age(run, seconds)  # the runs finished in the order of their dirs' names, the single run last
    os.utime(old / "multirun.yaml", (1, 1))  # an old sweep, whatever order the copies were made in
    single = copy_tree(run_dirs(sweep)[0], tmp_path / "outputs" / "runs" / "2026-01-01" / "08-00-00")  # a rerun of one
    monkeypatch.chdir(tmp_path)
    code, result, _ = collect(capsys)
    assert code == 0 and result["out_dir"] == os.path.join("outputs", "multirun", "2026-01-01", "10-00-00")
    assert len(result["runs"]) == 8 and (new / "comparison.md").is_file() and not (old / "comparison.md").exists()
    code, result, _ = collect(capsys, "--all")
    assert code == 0 and (tmp_path / "outputs" / "collected" / "comparison.md").is_file()
    # each (cell, seed) once, from the run that finished last: the single run replaces its twin in the new sweep
    collected = {row["run_dir"] for row in result["runs"] if row["status"] == "completed"}
    assert collected == {os.path.relpath(d, tmp_path) for d in run_dirs(new)[1:] + [single]}
    assert sum(row["status"] == "duplicate" for row in result["runs"]) == 4 + 1
    assert sum(row["status"] == "missing" for row in result["runs"]) == 4  # the old sweep lost 4 of its 8 jobs


def test_nothing_to_collect_and_wrong_path_fail_with_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing to collect" in err and str(tmp_path / "outputs" / "multirun") in err
    (tmp_path / "empty").mkdir()
    assert main(["empty"]) == 1
    err = capsys.readouterr().err
    assert "nothing to collect" in err and str(tmp_path / "empty") in err
    assert main(["no/such/sweep"]) == 1
    assert "no/such/sweep: no such directory" in capsys.readouterr().err


def test_sort_and_stdout_formats(sweep, tmp_path, capsys):
    assert main([str(sweep), "--out", str(tmp_path), "--format", "csv", "--sort=-test/acc"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert len(table) == 4 and table["test/acc"].is_monotonic_decreasing
    assert main([str(sweep), "--out", str(tmp_path), "--sort", "params"]) == 0
    assert capsys.readouterr().out.startswith("# Comparison")
    assert pd.read_csv(tmp_path / "summary.csv")["params"].is_monotonic_increasing
    assert main([str(sweep), "--out", str(tmp_path), "--sort", "accuracy"]) == 2
    err = capsys.readouterr().err
    assert "unknown --sort column 'accuracy'" in err and "test/acc" in err and "pooling" in err


def test_runs_as_a_script_without_the_heavy_modules(sweep, tmp_path):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['sweep/collect.py', {str(sweep)!r}, '--out', {str(tmp_path)!r}, '--format', 'json']\n"
        "try:\n    runpy.run_path('sweep/collect.py', run_name='__main__')\n"
        "except SystemExit as stop:\n    code = stop.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'sweep.job.runner', 'sweep.model.classifier', 'sweep.train') if m in sys.modules]\n"
        "print('PROBE', code, heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "PROBE 0 []" in done.stderr, done.stderr[-2000:]
    assert len(json.loads(done.stdout)["cells"]) == 4
    done = subprocess.run(
        [sys.executable, "sweep/collect.py", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "no such directory" in done.stderr


def seed_one(sweep_dir):
    return [d for d in run_dirs(sweep_dir) if read_metrics(d)["seed"] == 1]


def markdown_line(markdown: str, start: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(start))


def test_a_rerun_of_the_same_cell_and_seed_counts_once_the_newest(sweep, tmp_path, capsys):
    """The grid rerun into a new dir, both collected: each (cell, seed) once, from the newer run."""
    old, new = copy_tree(sweep, tmp_path / "09-00-00"), copy_tree(sweep, tmp_path / "10-00-00")
    for run in run_dirs(old):
        age(run, 3600)
    code, result, _ = collect(capsys, old, new, "--out", tmp_path / "out")
    assert code == 0
    assert len(result["cells"]) == 4 and all(c["n"] == 2 and c["seeds"] == "1 2" for c in result["cells"])
    assert {r["run_dir"] for r in result["runs"] if r["status"] == "completed"} == set(map(str, run_dirs(new)))
    dropped = result["not_in_table"]
    assert sorted(r["run_dir"] for r in dropped) == sorted(map(str, run_dirs(old)))
    assert all(r["status"] == "duplicate" and "10-00-00" in r["error"] for r in dropped)
    assert all(r["seed_pairs"] == 2 for r in result["significance"])  # not 4: no seed paired twice
    markdown = (tmp_path / "out" / "comparison.md").read_text()
    assert "## Runs not in the table (8)" in markdown and "| duplicate | same cell and seed as " in markdown


def test_one_setup_is_one_cell_whatever_its_neutral_keys_and_what_auto_resolved_to(sweep, tmp_path, capsys):
    """trainer.threads, precision=auto that ran fp32 vs fp32, compile=auto that stayed eager vs false,
    split_seed=${seed} vs the same number: one setup. auto that resolved to bf16 is another."""
    runner, neutral = importlib.import_module("sweep.job.runner"), importlib.import_module("sweep.config.neutral")
    # one list for the whole project; the runner's rerun check keeps what decides the files a run leaves
    assert runner.RERUN_NEUTRAL_KEYS == tuple(k for k in neutral.RESULT_NEUTRAL_KEYS if k not in neutral.ARTIFACT_KEYS)
    assert runner.config_fingerprint({"trainer": {"threads": 1}}) == runner.config_fingerprint(
        {"trainer": {"threads": 4}}
    )
    assert runner.config_fingerprint({"trainer": {"save_best": True}}) != runner.config_fingerprint(
        {"trainer": {"save_best": False}}
    )
    for run in seed_one(sweep):
        copy_tree(run, tmp_path / "runs" / f"a-{run.name}")
        twin = copy_tree(run, tmp_path / "runs" / f"b-{run.name}")
        reseed(twin, 2)
        edit_config(
            twin,
            trainer__threads=1,
            trainer__log_every_n_steps=7,
            trainer__precision="fp32",
            trainer__compile=False,
            trainer__device="cpu",
            data__split_seed=2,
        )
        edit_metrics(copy_tree(run, tmp_path / "runs" / f"c-{run.name}"), precision="bf16")
    code, result, _ = collect(capsys, tmp_path / "runs", "--out", tmp_path / "out")
    assert code == 0
    assert list(result["cells"][0])[:4] == ["model", "pooling", "trainer.precision", "n"]
    cells = {(c["model"], c["pooling"], c["trainer.precision"]): c for c in result["cells"]}
    assert len(cells) == 8
    for (_, _, precision), cell in cells.items():
        assert (cell["n"], cell["seeds"]) == ((2, "1 2") if precision == "fp32" else (1, "1"))


def test_a_key_missing_from_some_configs_keeps_their_runs_apart(sweep, tmp_path, capsys):
    """An older schema without optim.warmup_ratio may have meant another setup: never merged silently."""
    for run in seed_one(sweep):
        copy_tree(run, tmp_path / "runs" / f"a-{run.name}")
        older = copy_tree(run, tmp_path / "runs" / f"b-{run.name}")
        reseed(older, 2)
        edit_config(older, optim__warmup_ratio=REMOVE)
    code, result, _ = collect(capsys, tmp_path / "runs", "--out", tmp_path / "out")
    assert code == 0
    assert len(result["cells"]) == 8 and all(c["n"] == 1 for c in result["cells"])
    assert {c["optim.warmup_ratio"] for c in result["cells"]} == {0.0, "(not recorded)"}
    # sorting by that column puts the numbers first, "(not recorded)" last, either way round
    for spec in ("optim.warmup_ratio", "-optim.warmup_ratio"):
        code, result, _ = collect(capsys, tmp_path / "runs", "--out", tmp_path / "out", f"--sort={spec}")
        assert code == 0
        assert [c["optim.warmup_ratio"] for c in result["cells"]] == [0.0] * 4 + ["(not recorded)"] * 4


def test_tuned_view_keeps_each_cells_best_lr_by_validation_only(sweep, tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for run in seed_one(sweep):
        bert = read_metrics(run)["model"] == "bert"
        low, high = copy_tree(run, runs / f"low-{run.name}"), copy_tree(run, runs / f"high-{run.name}")
        edit_config(low, optim__lr=1e-4)
        # bert is best at the low lr on validation, modernbert at the high one; test says the opposite
        edit_metrics(low, **{"valid/acc": 0.9 if bert else 0.6, "test/acc": 0.6 if bert else 0.9})
        edit_metrics(high, **{"valid/acc": 0.6 if bert else 0.9, "test/acc": 0.9 if bert else 0.6})
    code, result, _ = collect(capsys, runs, "--out", out, "--select", "valid/acc", "--over", "optim.lr")
    assert code == 0
    cells = by_cell(result["cells"])
    assert len(cells) == 4
    for (model, _), cell in cells.items():
        assert cell["optim.lr"] == (1e-4 if model == "bert" else 0.002)
        assert (cell["valid/acc"], cell["test/acc"]) == (0.9, 0.6)
    markdown = (out / "comparison.md").read_text()
    assert "optim.lr (selected by valid acc)" in markdown_line(markdown, "| model |")
    for argv, words in (
        (["--over", "trainer.epochs"], ["trainer.epochs", "not swept", "optim.lr"]),
        (["--select", "test/acc", "--over", "optim.lr"], ["test/acc", "validation"]),
        (["--select", "valid/nope", "--over", "optim.lr"], ["valid/nope", "valid/acc"]),
        (["--select", "valid/acc"], ["--over"]),
    ):
        assert main([str(runs), "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and all(word in err for word in words), err


def test_the_tuned_view_gives_the_expected_best_by_budget_and_flags_curves_that_cross(sweep, tmp_path, capsys):
    """Three learning rates per cell: bert steady (0.70, 0.72, 0.74), modernbert erratic (0.60, 0.65,
    0.90): bert ahead at a budget of one trial, modernbert at three."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    scores = {"bert": (0.70, 0.72, 0.74), "modernbert": (0.60, 0.65, 0.90)}
    for run in seed_one(sweep):
        model = read_metrics(run)["model"]
        for lr, score in zip((1e-4, 1e-3, 1e-2), scores[model]):
            copy = copy_tree(run, runs / f"{lr}-{run.name}")
            edit_config(copy, optim__lr=lr)
            edit_metrics(copy, **{"valid/acc": score})
    code, result, _ = collect(capsys, runs, "--out", out, "--over", "optim.lr")
    assert code == 0
    table = pd.read_csv(out / "expected_max_valid.csv")
    assert list(table.columns) == ["cell", "n", "expected_max_valid", "std"] and len(table) == 4 * 3
    assert table.to_dict("records") == result["expected_max_valid"]
    for cell, curve in table.groupby("cell"):
        model = cell.split(",")[0].removeprefix("model=")
        assert curve["n"].tolist() == [1, 2, 3]
        assert curve["expected_max_valid"].iloc[0] == pytest.approx(np.mean(scores[model]))
        assert curve["expected_max_valid"].is_monotonic_increasing
        assert curve["expected_max_valid"].iloc[-1] <= max(scores[model])
    markdown = (out / "comparison.md").read_text()
    assert "Curves that cross" in markdown and "model=bert, pooling=cls and model=modernbert, pooling=cls" in markdown
    assert "![expected best valid acc by budget](expected_max_valid.png)" in markdown
    assert mpimg.imread(out / "expected_max_valid.png").shape[0] > 100
    drawn = json.loads((out / "plots.json").read_text())["expected_max_valid.png"]
    assert len(drawn["curves"]) == 4
    shutil.rmtree(next(runs.glob("0.01-*")))  # one cell loses a trial: named as having fewer
    assert collect(capsys, runs, "--out", out, "--over", "optim.lr")[0] == 0
    assert "Fewer trials than the others: " in (out / "comparison.md").read_text()


def test_the_table_says_what_each_number_is(sweep, tmp_path, capsys):
    runs = seed_one(sweep)
    assert collect(capsys, *runs, "--out", tmp_path)[0] == 0
    markdown = (tmp_path / "comparison.md").read_text()
    header = markdown_line(markdown, "| model |")
    for column in (
        "train acc (running, best epoch)",
        "train loop (s)",
        "train loop samples/s",
        "params (incl. unused)",
    ):
        assert f"| {column} |" in header + " |"
    metrics = read_metrics(runs[0])
    row = markdown_line(markdown, f"| {metrics['model']} | {metrics['pooling']} |")
    assert f"| {metrics['train_seconds']:.1f} | {metrics['train_samples_per_s']:,.0f} |" in row
    assert "dropout on" in markdown and "not evaluation, tokenization or compilation" in markdown
    plot = json.loads((tmp_path / "plots.json").read_text())["test_acc.png"]
    assert plot["error_bars"] == "95% bootstrap CI over test examples" and plot["error_bars"] in plot["title"]


def test_accuracy_chart_has_one_kind_of_error_bar_and_an_axis_that_shows_the_differences(sweep_copy, tmp_path, capsys):
    for i, run in enumerate(run_dirs(sweep_copy)):  # between 0.83 and 0.93, as on real IMDB
        edit_metrics(run, **{"test/acc": 0.83 + 0.013 * i})
    shutil.rmtree(run_dirs(sweep_copy)[0])  # one cell left with one seed: still no CI in a chart of stds
    assert collect(capsys, sweep_copy, "--out", tmp_path)[0] == 0
    plot = json.loads((tmp_path / "plots.json").read_text())["test_acc.png"]
    assert plot["error_bars"] == "std over seeds" and plot["error_bars"] in plot["title"]
    bars = plot["bars"]
    assert [(b["err_low"], b["err_high"]) for b in bars if b["n"] == 1] == [(0.0, 0.0)]
    low, high = plot["xlim"]
    assert 0.7 < low <= min(b["value"] - b["err_low"] for b in bars)
    assert max(b["value"] + b["err_high"] for b in bars) <= high < 1.0
