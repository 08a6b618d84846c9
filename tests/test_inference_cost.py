"""Inference cost: every run records test-set throughput and peak memory, and the table shows them
beside the training cost."""

import json
import subprocess
import sys

import pytest
import torch

from helpers.app import train_in_process
from helpers.rundirs import metrics, run_dirs
from sweep.fit.inference_cost import TimedLoader, peak_memory
from sweep.report.cli import main as collect_main

# a tiny BERT on generated data, one epoch: seconds on 2 CPU cores; 120 test rows in batches of 16
QUICK = [
    "experiment=smoke",
    "model=bert",
    "logger=none",
    "data.n_samples=1200",
    "trainer.batch_size=28",
    "data.eval_batch_size=16",
    "trainer.epochs=1",
    "trainer.save_best=false",
]


def batches(*sizes):
    return [{"labels": torch.zeros(size, dtype=torch.long)} for size in sizes]


def test_the_timed_span_leaves_out_the_warm_up_batch():
    timed = TimedLoader(batches(16, 16, 16, 7), torch.device("cpu"))
    assert sum(len(b["labels"]) for b in timed) == 55
    timed.stop()
    assert timed.samples == 16 + 16 + 7 and timed.seconds > 0 and timed.samples_per_s() > 0
    single = TimedLoader(batches(5), torch.device("cpu"))
    list(single)
    single.stop()
    assert single.samples_per_s() is None  # nothing after the warm-up batch to time


HOST_PEAK_CHECK = """
import torch
from sweep.fit.inference_cost import peak_memory
with peak_memory(torch.device("cpu")) as quiet:
    pass
with peak_memory(torch.device("cpu")) as busy:
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    del block
print(quiet.kind, busy.kind, quiet.mib, busy.mib)
"""


def test_host_peak_memory_sees_what_the_block_allocates():
    # a fresh interpreter: in this one, the in-process runs before leave freed pages that an
    # allocation may reuse without the resident set growing
    out = subprocess.run([sys.executable, "-c", HOST_PEAK_CHECK], capture_output=True, text=True, check=True)
    quiet_kind, busy_kind, quiet_mib, busy_mib = out.stdout.split()
    assert quiet_kind == busy_kind == "host_rss"
    assert float(busy_mib) >= float(quiet_mib) + 50, out.stdout


def test_a_run_records_its_inference_cost_and_the_table_shows_it(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    train_in_process(*QUICK, f"hydra.sweep.dir={sweep_dir}")
    (run_dir,) = run_dirs(sweep_dir)
    m = metrics(run_dir)
    assert m["status"] == "completed"
    # a 2-layer, 64-wide BERT on CPU: far more than 10 samples/s, far less than 10 million
    assert 10 < m["test_samples_per_s"] < 1e7, m["test_samples_per_s"]
    # the whole process (torch, the data, the model) resident, below the machine's memory
    assert m["peak_memory_kind"] == "host_rss" and 100 < m["peak_memory_mib"] < 64_000, m["peak_memory_mib"]

    assert collect_main([str(sweep_dir), "--out", str(tmp_path / "table"), "--format", "json"]) == 0
    (cell,) = json.loads(capsys.readouterr().out)["cells"]
    assert cell["test_samples_per_s"] == pytest.approx(m["test_samples_per_s"])
    assert cell["peak_memory_mib"] == pytest.approx(m["peak_memory_mib"])
    markdown = (tmp_path / "table" / "comparison.md").read_text()
    header = next(line for line in markdown.splitlines() if line.startswith("| model |"))
    assert "| train loop samples/s | inference samples/s (test) | inference peak memory (MiB) |" in header
    row = next(line for line in markdown.splitlines() if line.startswith("| bert |"))
    assert f"| {m['test_samples_per_s']:,.0f} | {m['peak_memory_mib']:,.0f} |" in row
    assert "the first (warm-up) batch excluded" in markdown and "peak_memory_kind" in markdown


def test_on_a_gpu_the_device_waits_at_the_ends_of_the_span_only(monkeypatch):
    """The CUDA calls, recorded on CPU: the timed span starts and ends with a synchronize, never
    one per batch, and the peak is read after the last kernel, from a reset counter."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: calls.append("read") or 3 * 2**20)
    gpu = torch.device("cuda")
    with peak_memory(gpu) as memory:
        timed = TimedLoader(batches(16, 16, 16, 16, 16), gpu)
        for _ in timed:
            calls.append("batch")
        timed.stop()
    assert calls == ["sync", "reset", "batch", "sync"] + ["batch"] * 4 + ["sync", "sync", "read"]
    assert (memory.mib, memory.kind) == (3.0, "cuda_allocated") and timed.samples == 64
