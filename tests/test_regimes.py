"""The training regimes on the tiny models of both families: a frozen encoder's probe trains on
features encoded once for every parameter-free pooling, LoRA trains adapters whose merged model is
a plain checkpoint, both resume exactly, both predict as they tested, and the table tells them apart.
The real pretrained MiniLM's figures are in test_real_model.py."""

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers.app import TIMING_KEYS, train_in_process
from helpers.rundirs import metrics, run_dirs
from sweep.rundir import ADAPTER_DIR, BEST_DIR

pytestmark = pytest.mark.slow  # eight runs of the tiny models: out of the edit-test loop

LORA_GRID = ["model=bert,modernbert", "method=lora", "pooling=mean", "experiment=smoke"]


def frozen_overrides(smoke_sweep, family: str, cache) -> list:
    """A probe of the smoke grid's fine-tuned encoder of `family`, loaded as any checkpoint is (model=hf)."""
    checkpoint = smoke_sweep / f"experiment=smoke,model={family},pooling=cls" / BEST_DIR
    return [
        "model=hf",
        f"model.id='{checkpoint}'",  # quoted: a sweep dir's name holds = and ,
        f"model.name=smoke-{family}",
        "experiment=smoke",
        "model.tiny=false",
        "method=frozen",
        f"method.feature_cache={cache}",
    ]


@pytest.fixture(scope="module")
def regimes_sweep(smoke_sweep, tmp_path_factory):
    """Frozen probes of both families' fine-tuned smoke encoders over two poolings, and LoRA on both
    tiny families: {(model, method, pooling): run dir}."""
    root = tmp_path_factory.mktemp("regimes")
    for family in ("bert", "modernbert"):
        overrides = frozen_overrides(smoke_sweep, family, root / "cache")
        train_in_process(*overrides, "pooling=cls,cls_mean", "logger=none", f"hydra.sweep.dir={root / family}")
    train_in_process(*LORA_GRID, "logger=none", f"hydra.sweep.dir={root / 'lora'}")
    runs = {}
    for sweep in ("bert", "modernbert", "lora"):
        runs.update({(m["model"], m["method"], m["pooling"]): d for d in run_dirs(root / sweep) for m in [metrics(d)]})
    assert len(runs) == 6
    return root, runs


def best_encoder(run_dir):
    return load_file(run_dir / BEST_DIR / "model.safetensors")


def test_a_frozen_sweep_encodes_each_model_once_and_trains_only_the_head(regimes_sweep):
    root, runs = regimes_sweep
    assert len([p for p in (root / "cache").iterdir() if p.is_dir()]) == 2  # one entry per encoder
    for model in ("smoke-bert", "smoke-modernbert"):
        first, second = metrics(runs[model, "frozen", "cls"]), metrics(runs[model, "frozen", "cls_mean"])
        assert (first["feature_cache"], second["feature_cache"]) == ("miss", "hit")
        assert first["status"] == second["status"] == "completed"
        assert first["method"] == "frozen" and first["feature_seconds"] <= first["train_seconds"]
        # the head alone: width x 2 labels + 2 biases; cls_mean's vector is twice as wide
        assert (first["trainable_params"], second["trainable_params"]) == (64 * 2 + 2, 128 * 2 + 2)
        # the encoder was fine-tuned on this task (test/acc ~0.9): a new head on its vectors learns it again
        assert min(first["test/acc"], second["test/acc"]) > 0.8, (first["test/acc"], second["test/acc"])
        # the encoder never changed: both runs saved the same weights
        a, b = best_encoder(runs[model, "frozen", "cls"]), best_encoder(runs[model, "frozen", "cls_mean"])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_trains_adapters_and_saves_a_plain_merged_checkpoint_beside_them(regimes_sweep):
    from transformers import AutoModel

    _, runs = regimes_sweep
    targets = {"bert": ["query", "value"], "modernbert": ["Wqkv"]}
    for model, expected in targets.items():
        run_dir = runs[model, "lora", "mean"]
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["method"] == "lora"
        assert m["test/acc"] > 0.7, m["test/acc"]
        assert m["trainable_params"] < 0.05 * m["params"]
        adapter = json.loads((run_dir / BEST_DIR / ADAPTER_DIR / "adapter_config.json").read_text())
        assert sorted(adapter["target_modules"]) == sorted(expected) and adapter["r"] == 8
        encoder = AutoModel.from_pretrained(run_dir / BEST_DIR)
        assert not [k for k in encoder.state_dict() if "lora" in k]  # merged: no adapter keys left


@pytest.mark.parametrize("method", ["frozen", "lora"])
def test_predictions_from_best_are_the_ones_the_run_tested(regimes_sweep, tmp_path, method):
    """Frozen: the head tested on cached features, best/ runs the encoder; LoRA: tested merged."""
    from test_predict import the_test_split

    from sweep.predict import main as predict_main

    _, runs = regimes_sweep
    run_dir = runs[("smoke-modernbert", "frozen", "cls_mean") if method == "frozen" else ("modernbert", "lora", "mean")]
    texts, written = the_test_split(run_dir)
    pd.DataFrame({"review": texts}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    argv = [run_dir, "--file", tmp_path / "test.jsonl", "--text-column", "review", "--out", tmp_path / "p.csv"]
    assert predict_main([str(arg) for arg in argv]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert (predicted["class_id"].to_numpy() == written["pred"].to_numpy()).all()
    assert predicted["prob_pos"].to_numpy() == pytest.approx(written["prob_pos"].to_numpy(), abs=1e-4)


@pytest.mark.parametrize("method", ["frozen", "lora"])
def test_an_interrupted_run_resumes_to_the_same_result(smoke_sweep, regimes_sweep, tmp_path, monkeypatch, method):
    from sweep.fit.loop import TrainingLoop
    from sweep.launch.interrupts import RunInterrupted

    root, runs = regimes_sweep
    if method == "frozen":
        reference = runs["smoke-bert", "frozen", "cls"]
        overrides = frozen_overrides(smoke_sweep, "bert", root / "cache") + ["pooling=cls"]
    else:
        reference = runs["bert", "lora", "mean"]
        overrides = [o.split(",")[0] for o in LORA_GRID]
    overrides += ["logger=none", f"hydra.sweep.dir={tmp_path}"]
    keep = TrainingLoop.keep

    def stop_after_the_first(loop, row, epoch, batches):
        keep(loop, row, epoch, batches)
        raise RunInterrupted("stopped after epoch 1")

    monkeypatch.setattr(TrainingLoop, "keep", stop_after_the_first)
    with pytest.raises(RunInterrupted):
        train_in_process(*overrides)
    monkeypatch.setattr(TrainingLoop, "keep", keep)
    train_in_process(*overrides)
    (run_dir,) = run_dirs(tmp_path)
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()
    resumed, uninterrupted = metrics(run_dir), metrics(reference)
    # frozen: the reference encoded the features, both attempts here read them: the same numbers
    for key in uninterrupted.keys() - TIMING_KEYS - {"feature_cache"}:
        assert resumed[key] == uninterrupted[key], key
    assert pd.read_parquet(run_dir / "predictions_test.parquet").equals(
        pd.read_parquet(reference / "predictions_test.parquet")
    )


def test_the_table_tells_the_regimes_apart_with_their_trainable_parameters(regimes_sweep, tmp_path):
    from sweep.report.cli import main as collect_main

    root, _ = regimes_sweep
    assert collect_main([str(root / sweep) for sweep in ("bert", "modernbert", "lora")] + ["--out", str(tmp_path)]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 6 and sorted(summary["method"]) == ["frozen"] * 4 + ["lora"] * 2
    assert (summary["trainable_params"] < summary["params"]).all()
    header = next(line for line in (tmp_path / "comparison.md").read_text().splitlines() if line.startswith("| model"))
    assert "| method |" in header and "| trainable params |" in header
    assert "includes the encoding of every split" in (tmp_path / "comparison.md").read_text()


def test_a_frozen_probe_and_a_merged_lora_run_export_and_serve_the_labels_they_tested(regimes_sweep, tmp_path):
    """The exporter on the regimes' best/: a probe's (a fine-tuned encoder loaded as any checkpoint) and
    LoRA's, saved with its adapters merged."""
    from test_export import assert_backends_give_the_runs_labels, exported_copy

    _, runs = regimes_sweep
    for cell in (("smoke-bert", "frozen", "cls_mean"), ("modernbert", "lora", "mean")):
        assert_backends_give_the_runs_labels(exported_copy(runs[cell], tmp_path / cell[1]), tmp_path)
