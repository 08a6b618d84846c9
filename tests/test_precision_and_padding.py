"""Speed settings change speed, not results: every precision and compile setting that a CPU runs
still learns, and dynamic padding evaluates a checkpoint exactly as max_length padding does."""

import pytest
import torch

from helpers.app import train_in_process
from helpers.rundirs import evaluate_best, metrics, run_dirs
from sweep.data.loaders import length_grouped_batches
from sweep.model.device import resolve_precision


@pytest.mark.slow
def test_every_cpu_precision_and_compile_setting_learns(tmp_path):
    """bf16 and fp16 autocast (5x slower than fp32 on this CPU) on half the smoke data for one epoch
    learn what fp32 learns: valid/acc 0.765 (bf16), 0.760 (fp16), 0.760 (fp32)."""
    sweep_dir = tmp_path / "sweep"
    train_in_process(
        "experiment=smoke",
        "model=bert",
        "pooling=mean",
        "logger=none",
        "trainer.precision=bf16,fp16,fp32",
        "data.padding=dynamic",
        "data.n_samples=2000",
        "trainer.epochs=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    train_in_process(
        "experiment=smoke",
        "model=modernbert",
        "pooling=cls",
        "logger=none",
        "trainer.compile=true",
        "trainer.precision=fp32",
        "trainer.epochs=1",  # valid/acc 0.852
        "model.tiny_config.num_hidden_layers=1",  # inductor's C++ build is the cost: 34 s cold, 42 s with 2 layers
        f"hydra.sweep.dir={sweep_dir}",
    )
    runs = {
        metrics(d)["precision"] + ("+compile" if metrics(d)["compiled"] else ""): metrics(d)
        for d in run_dirs(sweep_dir)
    }
    assert set(runs) == {"bf16", "fp16", "fp32", "fp32+compile"}
    for name, m in runs.items():
        assert m["status"] == "completed", (name, m["status"])
    for name in ("bf16", "fp16"):
        assert abs(runs[name]["valid/acc"] - runs["fp32"]["valid/acc"]) <= 0.02, (name, runs[name]["valid/acc"])
        assert runs[name]["valid/acc"] > 0.7, (name, runs[name]["valid/acc"])
    assert runs["fp32+compile"]["valid/acc"] > 0.8, runs["fp32+compile"]["valid/acc"]
    assert runs["fp32+compile"]["compile_seconds"] > 0


def test_auto_precision_is_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cpu")).dtype is None
    assert resolve_precision("fp16", torch.device("cpu")).scaler is not None


def test_dynamic_padding_gives_the_same_eval_accuracy(smoke_sweep):
    for run_dir in run_dirs(smoke_sweep)[::2]:  # one run of each family
        results = {
            padding: evaluate_best(run_dir, "valid", padding, batch_size=16) for padding in ("max_length", "dynamic")
        }
        assert results["dynamic"]["acc"] == results["max_length"]["acc"] == pytest.approx(metrics(run_dir)["valid/acc"])
        assert list(results["dynamic"]["preds"]) == list(results["max_length"]["preds"])


def test_length_grouped_batches_cover_every_row_once_with_less_padding():
    lengths = [(i * 37) % 120 + 5 for i in range(1000)]
    batches = length_grouped_batches(lengths, 8, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert batches == length_grouped_batches(lengths, 8, seed=3) != length_grouped_batches(lengths, 8, seed=4)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_order = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).tolist()
    padded_random = sum(8 * max(lengths[i] for i in random_order[s : s + 8]) for s in range(0, 1000, 8))
    assert padded < 0.8 * padded_random
