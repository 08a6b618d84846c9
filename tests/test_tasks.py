"""data.task beyond single-label classes: multi_label (a set of labels per text) and regression (a
number per text). Their labels read from CSV / JSONL, the metrics on hand-checkable outputs, the bad
labels as one line, and tiny BERT runs on generated data that can be learned, read by predict.py and
collect."""

import contextlib
import io
import json
import random
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.app import train_in_process
from helpers.data_files import data_config, predict_main, write
from helpers.rundirs import metrics, run_dirs
from sweep.data.sources import prepare_splits
from sweep.errors import DataError
from sweep.model.tasks import MultiLabel, Regression

TOPIC_WORDS = {
    "film": ["acting", "plot", "script", "cast"],
    "food": ["soup", "dessert", "menu", "wine"],
    "hotel": ["room", "bed", "lobby", "pool"],
    "phone": ["battery", "screen", "charger", "keyboard"],
}
POSITIVE, NEGATIVE = ["great", "superb", "lovely", "brilliant"], ["awful", "dull", "poor", "terrible"]


def topic_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of one or two topics (their aspects named), labelled with the set of topics."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        topics = sorted(rng.sample(sorted(TOPIC_WORDS), rng.choice([1, 1, 2])))
        words = [f"the {rng.choice(TOPIC_WORDS[t])} was {rng.choice(POSITIVE + NEGATIVE)} ." for t in topics]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": ",".join(topics)})
    return pd.DataFrame(rows)


def scored_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Reviews of 0-3 praising and 0-3 damning phrases, scored by praises minus damnations (-3 to 3)."""
    rng, rows = random.Random(seed), []
    for _ in range(n):
        good, bad = rng.randint(0, 3), rng.randint(0, 3)
        phrases = [f"the {rng.choice(TOPIC_WORDS['film'])} was {rng.choice(POSITIVE)} ." for _ in range(good)]
        phrases += [f"the {rng.choice(TOPIC_WORDS['film'])} was {rng.choice(NEGATIVE)} ." for _ in range(bad)]
        rng.shuffle(phrases)
        rows.append({"text": " ".join(phrases) or "no opinion .", "score": float(good - bad)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- metrics on given outputs


def test_multi_label_metrics_count_every_label_decision():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.float32)
    logits = torch.tensor([[3.0, -3, 3], [3, 3, -3], [3, -3, -3]])  # row 1 right; row 2 one extra; row 3 one missing
    task = MultiLabel(0.5)
    found = task.metrics(labels, task.outputs(logits))
    # label 0: tp 2, fp 1; label 1: tp 1, fn 1; label 2: tp 1 -> micro: tp 4, fp 1, fn 1
    assert found["micro_f1"] == pytest.approx(8 / 10)
    assert found["macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 1) / 3)
    assert found["subset_acc"] == pytest.approx(1 / 3)
    assert task.loss(logits, labels) == pytest.approx(
        float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels))
    )


def test_regression_metrics_are_in_the_targets_units():
    task = Regression(mean=10.0, std=2.0)
    truth = torch.tensor([8.0, 10.0, 12.0, 14.0], dtype=torch.float64)
    standardized = (truth - 10.0) / 2.0
    logits = (standardized + torch.tensor([0.5, -0.5, 0.5, -0.5], dtype=torch.float64)).float()[:, None]
    found = task.metrics(truth, task.outputs(logits))  # the head is off by 0.5 std: 1 in the target's units
    assert task.loss(logits, truth) == pytest.approx(0.25)  # on the standardized target
    # predictions 9, 9, 13, 13 for 8, 10, 12, 14: r = 2 / sqrt(5); the tied ranks averaged alike
    assert found["mse"] == pytest.approx(1.0) and found["pearson"] == pytest.approx(2 / 5**0.5)
    assert found["spearman"] == pytest.approx(2 / 5**0.5)
    constant = task.metrics(truth, {"preds": torch.full((4,), 11.0)})
    assert np.isnan(constant["pearson"])  # a constant predictor correlates with nothing


# ---------------------------------------------------------------- reading the labels


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_multi_label_sets_read_from_a_separated_string_or_a_list(tmp_path, suffix):
    frame = topic_rows(200)
    if suffix == ".jsonl":
        frame = frame.assign(label=frame.label.str.split(","))
    write(frame, tmp_path / f"train{suffix}")
    splits = prepare_splits(data_config("text", f"data.local_dir={tmp_path}", "data.task=multi_label"))
    assert splits["train"].features["label"].feature.names == sorted(TOPIC_WORDS)
    ids = {name: i for i, name in enumerate(sorted(TOPIC_WORDS))}
    by_text = dict(zip(frame.text, frame.label))
    for split in splits.values():
        for text, labels in zip(split["text"], split["label"]):
            given = by_text[text] if isinstance(by_text[text], list) else by_text[text].split(",")
            assert labels == sorted(ids[t] for t in given)


def test_regression_targets_are_numbers_and_stsb_withheld_test_labels_are_dropped(tmp_path):
    frame = scored_rows(100).rename(columns={"text": "sentence1", "score": "label"}).assign(sentence2="pair")
    write(frame, tmp_path / "train.csv")
    write(frame.iloc[:20].assign(sentence1=lambda f: f.sentence1 + " v"), tmp_path / "validation.csv")
    write(frame.iloc[:30].assign(sentence1=lambda f: f.sentence1 + " t", label=-1.0), tmp_path / "test.csv")
    splits = prepare_splits(data_config("stsb", f"data.local_dir={tmp_path}"))
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [80, 20, 20]  # test carved from train
    assert sorted(set(splits["train"]["label"])) == sorted(set(frame.label))  # numbers, -1 and all


@pytest.mark.parametrize(
    "task, column, message",
    [
        (
            "regression",
            ["1.5", "high", "2"],
            "row 2 of the train split holds 'high' in label column 'label', not a number",
        ),
        ("multi_label", ["film", " , ", "food"], "row 2 of the train split holds no label in label column 'label'"),
    ],
)
def test_a_label_the_task_cannot_read_is_one_line_naming_its_row_and_column(tmp_path, task, column, message):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": (column * 10)[:30]})
    write(frame, tmp_path / "train.csv")
    with pytest.raises(DataError, match=message):
        prepare_splits(data_config("text", f"data.local_dir={tmp_path}", f"data.task={task}"))


# ---------------------------------------------------------------- runs, predict.py, collect

TINY = ["model=bert", "experiment=smoke", "data=text", "data.max_len=32", "logger=none"]


@pytest.fixture(scope="module")
def task_sweeps(tmp_path_factory):
    """A multi-label and a regression sweep of tiny BERT over two poolings (3 epochs of 1,600 rows)."""
    root = tmp_path_factory.mktemp("tasks")
    (root / "topics").mkdir()
    (root / "scores").mkdir()
    write(topic_rows(2000), root / "topics" / "train.csv")
    write(scored_rows(2000), root / "scores" / "train.jsonl")
    sweeps = {"multi_label": root / "multi", "regression": root / "regression"}
    train_in_process(
        *TINY, "pooling=cls,mean", f"data.local_dir={root / 'topics'}", "data.task=multi_label",
        f"hydra.sweep.dir={sweeps['multi_label']}",
    )  # fmt: skip
    train_in_process(
        *TINY, "pooling=cls,mean", f"data.local_dir={root / 'scores'}", "data.task=regression",
        "data.label_column=score", f"hydra.sweep.dir={sweeps['regression']}",
    )  # fmt: skip
    return sweeps


@pytest.mark.slow
def test_multi_label_runs_learn_the_topic_sets_and_record_them_per_label(task_sweeps):
    for run_dir in run_dirs(task_sweeps["multi_label"]):
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["task"] == "multi_label" and m["select_metric"] == "valid/micro_f1"
        assert m["test/micro_f1"] >= 0.8 and m["test/subset_acc"] > 0.5, (run_dir.name, m["test/micro_f1"])
        assert "test/acc" not in m  # a single-label figure
        predictions = pd.read_parquet(run_dir / "predictions_test.parquet")
        assert list(predictions.columns) == ["index", "label", "pred", "prob_0", "prob_1", "prob_2", "prob_3"]
        exact = [sorted(p) == sorted(t) for p, t in zip(predictions["pred"], predictions["label"])]
        assert np.mean(exact) == pytest.approx(m["test/subset_acc"])
        meta = json.loads((run_dir / "best" / "classifier.json").read_text())
        assert meta["task"] == "multi_label" and meta["threshold"] == 0.5 and meta["label_names"] == sorted(TOPIC_WORDS)


@pytest.mark.slow
def test_regression_runs_score_the_reviews_far_above_a_constant_predictor(task_sweeps):
    for run_dir in run_dirs(task_sweeps["regression"]):
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["task"] == "regression" and m["select_metric"] == "valid/pearson"
        # a constant predictor: Pearson undefined (0), MSE the variance of the scores (~2.5 here)
        assert m["test/pearson"] >= 0.8 and m["test/spearman"] >= 0.8, (run_dir.name, m["test/pearson"])
        predictions = pd.read_parquet(run_dir / "predictions_test.parquet")
        assert list(predictions.columns) == ["index", "label", "pred"]
        assert predictions["label"].isin(range(-3, 4)).all()  # the targets in their own units
        mse = float(((predictions["pred"] - predictions["label"]) ** 2).mean())
        assert mse == pytest.approx(m["test/mse"]) and mse < 0.5 * predictions["label"].var()


@pytest.mark.slow
def test_predict_prints_the_label_set_and_the_number(task_sweeps):
    multi, regression = (run_dirs(task_sweeps[task])[-1] for task in ("multi_label", "regression"))  # pooling=mean
    said = predict_main(
        multi, "the soup was great . the battery was awful .", "the lobby was awful . the pool was great ."
    )
    table = pd.read_csv(pd.io.common.StringIO(said.stdout))
    assert said.returncode == 0 and list(table["labels"]) == ["food,phone", "hotel"], said.stdout
    assert list(table.columns) == ["labels", *(f"prob_{name}" for name in sorted(TOPIC_WORDS))]
    said = predict_main(
        regression, "the plot was great . the cast was superb . the acting was lovely .", "the plot was awful ."
    )
    values = pd.read_csv(pd.io.common.StringIO(said.stdout))["pred"]
    assert said.returncode == 0 and values[0] > 1.5 and values[1] < 0, said.stdout  # 3 and -1 in the data's terms


@pytest.mark.slow
def test_collect_puts_each_task_in_its_own_terms(task_sweeps, capsys):
    from sweep.report.cli import main as collect_main
    from sweep.report.stats import BOOTSTRAP_SE, MCNEMAR

    tables = {}
    for task, sweep_dir in task_sweeps.items():
        assert collect_main([str(sweep_dir), "--format", "json"]) == 0
        tables[task] = json.loads(capsys.readouterr().out)
    cells, sig = tables["multi_label"]["cells"], tables["multi_label"]["significance"]
    assert [c["test/micro_f1"] for c in cells] == sorted((c["test/micro_f1"] for c in cells), reverse=True)
    assert sig[0]["test"] == MCNEMAR  # on per-example subset accuracy
    cells, sig = tables["regression"]["cells"], tables["regression"]["significance"]
    assert [c["test/pearson"] for c in cells] == sorted((c["test/pearson"] for c in cells), reverse=True)
    mses = [r["test/mse"] for r in tables["regression"]["runs"]]
    assert sig[0]["test"] == BOOTSTRAP_SE and 0 <= sig[0]["p_value"] <= 1 and sig[0]["acc_diff"] is None
    assert abs(sig[0]["mse_diff"]) == pytest.approx(abs(mses[0] - mses[1]))  # A's test MSE minus B's
    # the tuned view selects by the runs' select metric, the task's headline
    assert collect_main([str(task_sweeps["regression"]), "--over", "pooling", "--format", "json"]) == 0
    selected = json.loads(capsys.readouterr().out)
    best = max(tables["regression"]["cells"], key=lambda c: c["valid/pearson"])
    assert selected["selection"]["metric"] == "valid/pearson" and selected["cells"][0]["pooling"] == best["pooling"]
    lines = (task_sweeps["regression"] / "comparison.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert "test Pearson r" in header and "acc" not in header  # its own figures, no empty accuracy columns


@pytest.mark.slow
def test_the_report_of_both_tasks_puts_each_in_its_own_terms_never_on_one_axis(task_sweeps, tmp_path, capsys):
    from test_report_page import Page

    from sweep.report.cli import main as collect_main

    assert collect_main([str(task_sweeps["multi_label"]), str(task_sweeps["regression"]), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    plots = json.loads((tmp_path / "plots.json").read_text())
    expected = {  # each task's plots, none empty: a line per run, a point per cell
        "multi_label": (
            "valid_micro_f1.png",
            "train_loss_multi_label.png",
            "test_micro_f1.png",
            "cost_multi_label.png",
        ),
        "regression": ("valid_pearson.png", "train_loss_regression.png", "test_pearson.png", "cost_regression.png"),
    }
    for task, names in expected.items():
        assert all(plots[name]["task"] == task and (tmp_path / name).is_file() for name in names), task
        lines = plots[names[0]]["lines"]
        assert len(lines) == 2 and all(len(line["y"]) == 3 and None not in line["y"] for line in lines)
        assert all(not pd.isna(bar["value"]) for bar in plots[names[2]]["bars"])
    assert "valid_acc.png" not in plots and "test_acc.png" not in plots  # no accuracy axis for these tasks
    page = Page((tmp_path / "report.html").read_text())
    titles = [h for h in page.headings if h.startswith("Comparison table")]
    assert titles == ["Comparison table — multi-label", "Comparison table — regression"]
    summary = pd.read_csv(tmp_path / "summary.csv")
    for number, metric, header in ((0, "test/micro_f1", "test micro-F1"), (1, "test/pearson", "test Pearson r")):
        shown = page.table(number)
        assert len(shown) == 2 and "test acc" not in shown.columns
        for _, row in shown.iterrows():
            cell = summary[(summary.pooling == row["pooling"]) & summary[metric].notna()].iloc[0]
            assert float(row[header]) == pytest.approx(cell[metric], abs=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_the_onnx_export_serves_each_task_as_torch_does(task_sweeps, tmp_path, task):
    from test_predict import the_test_split

    from sweep.bench import main as bench_main
    from sweep.export import main as export_main

    run_dir = tmp_path / "run"
    shutil.copytree(run_dirs(task_sweeps[task])[-1], run_dir)  # the shared runs are only read
    assert export_main([str(run_dir), "--quantize", "int8"]) == 0
    record = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())
    checked, headline = record["check"], {"multi_label": "micro_f1", "regression": "pearson"}[task]
    assert record["failed_check"] == [] and checked["task"] == task and checked["onnx"]["agreement"] == 1.0
    assert checked["onnx"]["max_prob_diff" if task == "multi_label" else "max_std_diff"] <= 1e-4
    assert checked["onnx-int8"]["agreement"] >= 0.98
    # the check's rows are the run's whole test split: its torch figure is the run's own
    assert checked["torch"][f"test_{headline}"] == pytest.approx(metrics(run_dir)[f"test/{headline}"], abs=1e-3)
    card = (run_dir / "best" / "README.md").read_text()
    assert f"| backend | {checked['answers']} agree | max diff" in card and f"test {headline}" in card

    texts, _ = the_test_split(run_dir)
    pd.DataFrame({"text": texts}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    tables = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        said = predict_main(run_dir, "--file", tmp_path / "test.jsonl", "--backend", backend)
        assert said.returncode == 0, said.stderr
        tables[backend] = pd.read_csv(pd.io.common.StringIO(said.stdout), keep_default_na=False)
    torch_table = tables["torch"]
    assert list(tables["onnx"].columns) == list(torch_table.columns) and len(tables["onnx"]) == len(texts)
    if task == "multi_label":
        same = {b: (tables[b]["labels"] == torch_table["labels"]).mean() for b in ("onnx", "onnx-int8")}
    else:  # within a tenth of the target's spread, the export's rule
        std = json.loads((run_dir / "best" / "classifier.json").read_text())["target_std"]
        same = {b: (abs(tables[b]["pred"] - torch_table["pred"]) <= 0.1 * std).mean() for b in ("onnx", "onnx-int8")}
        assert tables["onnx"]["pred"].to_numpy() == pytest.approx(torch_table["pred"].to_numpy(), abs=1e-4 * std)
    assert same["onnx"] == 1.0 and same["onnx-int8"] >= 0.98, same

    # sets torch's threads in this process: given the worker's own, later runs here train as before
    bench = ["--inference", str(run_dir), "--rounds", "1", "--threads", str(torch.get_num_threads())]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_main(bench) == 0
    rows = [line.split() for line in out.getvalue().splitlines() if line.startswith(("torch ", "onnx"))]
    assert sorted({row[0] for row in rows}) == ["onnx", "onnx-int8", "torch"] and len(rows) == 6
    assert f"test {headline}" in out.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, overrides, metric, floor",
    [
        # a probe on a random-init encoder's mean-pooled vectors: 0.73 measured (a step of 5e-2, 5 epochs)
        ("multi_label", ["method=frozen", "pooling=mean", "optim.lr=5e-2", "trainer.epochs=5"], "test/micro_f1", 0.6),
        ("regression", ["method=lora", "pooling=mean", "optim.lr=2e-3"], "test/pearson", 0.6),
    ],
)
def test_frozen_probes_and_lora_learn_either_task(tmp_path, task, overrides, metric, floor):
    data = tmp_path / "data"
    data.mkdir()
    frame = topic_rows(1000) if task == "multi_label" else scored_rows(1000).rename(columns={"score": "label"})
    write(frame, data / "train.csv")
    sweep_dir = tmp_path / "sweep"
    cache = f"method.feature_cache={tmp_path / 'features'}"  # the probe's vectors: this test's own
    train_in_process(
        *TINY, *overrides, cache, f"data.local_dir={data}", f"data.task={task}", f"hydra.sweep.dir={sweep_dir}"
    )
    m = metrics(run_dirs(sweep_dir)[0])
    assert m["status"] == "completed" and m[metric] >= floor, (m["status"], m.get(metric), m.get("error"))


def test_multi_label_splits_keep_each_common_label_set_in_proportion_and_pool_the_rare_ones(tmp_path):
    labels = ["film"] * 300 + ["food"] * 300 + ["film,food"] * 200 + ["food,hotel,phone"] * 3  # the last: rare
    write(pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels}), tmp_path / "train.csv")
    splits = prepare_splits(data_config("text", f"data.local_dir={tmp_path}", "data.task=multi_label"))
    shares = {name: pd.Series([tuple(s) for s in ds["label"]]).value_counts() / len(ds) for name, ds in splits.items()}
    for name in ("valid", "test"):
        for labels_of_rows in [(0,), (1,), (0, 1)]:  # film, food, both: as common in every split
            assert abs(shares[name][labels_of_rows] - shares["train"][labels_of_rows]) < 0.02, (name, shares)
    assert sum(len(ds) for ds in splits.values()) == len(labels)  # the rare set split too, not dropped
