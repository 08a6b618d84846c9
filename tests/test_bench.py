"""The throughput benchmark runs as a script and prints both sides and their ratio; its imports stay
within torch + transformers (the GPU machines it targets have no datasets, hydra or wandb)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.mark.parametrize("model", ["bert-tiny", "modernbert-tiny"])
def test_quick_bench_prints_both_sides_and_their_ratio(model):
    proc = subprocess.run(
        [
            sys.executable,
            "sweep/bench.py",
            "--quick",
            "--model",
            model,
            "--device",
            "cpu",
            "--batch-size",
            "8",
            "--max-len",
            "64",
        ],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"bench {model}" in out
    assert re.search(r"^side\s+samples/s\s+ms/step", out, re.M), out
    rates = {side: float(m) for side, m in re.findall(r"^(project|bare)\s+([0-9.]+)\s", out, re.M)}
    assert set(rates) == {"project", "bare"} and all(r > 0 for r in rates.values()), out
    ratio = re.search(r"^ratio project/bare ([0-9.]+)", out, re.M)
    assert ratio and float(ratio.group(1)) > 0, out
    # the project prebuilds its attention masks; the bare side keeps transformers' padding_mask.all() check
    syncs = re.search(r"^host syncs per step: project (\d+), bare (\d+)", out, re.M)
    assert syncs and int(syncs.group(1)) == 0 and int(syncs.group(2)) >= 1, out


def test_bench_and_model_imports_need_only_torch_and_transformers():
    code = (
        "import sys, sweep.bench, sweep.model, sweep.loop, sweep.pooling, sweep.tiny\n"
        "heavy = [m for m in ('datasets', 'hydra', 'omegaconf', 'wandb', 'pandas') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
