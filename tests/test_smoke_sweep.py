"""The README's smoke grid as a real Hydra multirun: one dir per job with every contract file,
runs that learn, a best checkpoint that reloads to the same test accuracy, wandb runs that logged
what they should, and the same numbers when run again."""

import json

import pandas as pd
import pytest
from omegaconf import OmegaConf
from transformers import AutoModel, AutoTokenizer

from helpers.app import TIMING_KEYS, train_in_process
from helpers.rundirs import evaluate_best, metrics, run_dirs
from helpers.wandb_records import summarize
from sweep.model.classifier import Classifier, encoder_input_names
from sweep.rundir import HISTORY_COLUMNS

CONTRACT = [
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
    ".hydra/hydra.yaml",
    "metrics.json",
    "history.csv",
    "predictions_test.parquet",
    "best/classifier.json",
    "best/head.safetensors",
    "best/model.safetensors",
    "best/config.json",
    "best/tokenizer.json",
    "train.log",
]
CELLS = {
    "model=bert,pooling=cls",
    "model=bert,pooling=mean",
    "model=modernbert,pooling=cls",
    "model=modernbert,pooling=mean",
}


def test_grid_leaves_one_complete_run_dir_per_cell(smoke_sweep):
    dirs = run_dirs(smoke_sweep)
    assert {d.name for d in dirs} == {f"experiment=smoke,{cell}" for cell in CELLS}
    for run_dir in dirs:
        missing = [f for f in CONTRACT if not (run_dir / f).is_file()]
        assert not missing, f"{run_dir.name} lacks {missing}"
        assert list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        assert not list(run_dir.glob(".*.tmp*")) and not (run_dir / "resume_state.pt").exists()
        m = metrics(run_dir)
        overrides = dict(o.split("=") for o in OmegaConf.load(run_dir / ".hydra/overrides.yaml"))
        assert (m["model"], m["pooling"], m["seed"]) == (overrides["model"], overrides["pooling"], 42)
        assert m["status"] == "completed" and m["error"] is None
        assert m["valid/acc"] > 0.8, f"{run_dir.name} did not learn the synthetic data: {m['valid/acc']}"
        assert m["test/acc"] > 0.75 and 0 < m["test/f1"] <= 1 and 0 < m["test/macro_f1"] <= 1 and m["params"] > 10_000
        history = pd.read_csv(run_dir / "history.csv")
        assert list(history["epoch"]) == [1, 2, 3] and m["epochs_run"] == 3
        # the contract's columns, in its order (train/grad_norm only under clipping)
        assert tuple(history.columns) == tuple(c for c in HISTORY_COLUMNS if c != "train/grad_norm")
        assert history["valid/acc"].max() == pytest.approx(m["valid/acc"])
        assert int(history["valid/acc"].idxmax()) + 1 == m["best_epoch"]
        predictions = pd.read_parquet(run_dir / "predictions_test.parquet")
        assert list(predictions.columns) == ["index", "label", "pred", "prob_pos", "prob_0", "prob_1"]
        assert len(predictions) == m["test_samples"] and predictions["index"].is_unique
        assert (predictions["label"] == predictions["pred"]).mean() == pytest.approx(m["test/acc"])


def test_wandb_run_logged_config_steps_epochs_test_and_finished(smoke_sweep):
    for run_dir in run_dirs(smoke_sweep):
        run = summarize(run_dir)
        assert run["group"] == f"{smoke_sweep.parent.name}_{smoke_sweep.name}"
        assert run["name"] == run_dir.name
        m = metrics(run_dir)
        assert set(run["tags"]) == {f"model:{m['model']}", f"pooling:{m['pooling']}", f"method:{m['method']}"}
        assert {"model", "pooling", "data", "optim", "trainer", "seed"} <= run["config"]
        keys = [set(row) for row in run["history"]]
        assert sum("train/loss_step" in k for k in keys) >= 2  # every log_every_n_steps
        assert sum("valid/acc" in k for k in keys) == 3  # every epoch
        assert any("test/acc" in k for k in keys)
        assert {"test/acc", "valid/acc", "best_epoch"} <= run["summary"]
        assert run["exit_code"] == 0


def test_best_checkpoint_reloads_to_the_same_test_accuracy(smoke_sweep):
    for run_dir in run_dirs(smoke_sweep)[::2]:  # one run of each family
        result = evaluate_best(run_dir, "test")
        saved = pd.read_parquet(run_dir / "predictions_test.parquet")
        assert result["acc"] == metrics(run_dir)["test/acc"]
        assert list(result["preds"]) == list(saved["pred"])
        cfg = OmegaConf.load(run_dir / ".hydra/config.yaml")
        encoder = AutoModel.from_pretrained(run_dir / "best")
        assert encoder.config.model_type == cfg.model.family
        info = json.loads((run_dir / "best/classifier.json").read_text())
        assert info["pooling"] == cfg.pooling.name and info["max_len"] == cfg.data.max_len


def test_token_type_ids_follow_the_model_not_its_name(smoke_sweep):
    for run_dir in run_dirs(smoke_sweep):
        model = Classifier.from_pretrained(run_dir / "best")
        names = encoder_input_names(model.encoder, AutoTokenizer.from_pretrained(run_dir / "best"))
        bert = metrics(run_dir)["model"] == "bert"
        expected = ["input_ids", "token_type_ids", "attention_mask"] if bert else ["input_ids", "attention_mask"]
        assert names == expected, run_dir.name


def test_same_smoke_run_twice_gives_identical_numbers(smoke_sweep, tmp_path):
    again = tmp_path / "again"
    train_in_process("experiment=smoke", "model=bert", "pooling=cls", f"hydra.run.dir={again}", multirun=False)
    first = metrics(smoke_sweep / "experiment=smoke,model=bert,pooling=cls")
    second = metrics(again)
    for key in first.keys() - TIMING_KEYS:
        assert first[key] == second[key], key
