"""bench.py --inference RUN_DIR: the run's classifier served each way it can be, side by side in one
process: torch (eager, fp32, best/), onnx and onnx-int8 (best/onnx/, ONNX Runtime) where the run was
exported. Each request is tokenization and the forward pass, as a server runs it, on the run's own
test texts at its max_len; rounds interleave the backends, so a noisy neighbour slows them alike.
Every task (the run's own reading of the outputs is part of a request). Prints samples/s and p50/p95
latency per backend at batch 1 and batch 32, and the export's check (the task's headline test figure
and agreement with torch, from export.json)."""

import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

from sweep.rundir import EXPORT_FILE, ONNX_DIR, ONNX_MODELS, read_json
from sweep.serve.checkpoint import read_meta
from sweep.serve.export_check import test_headline
from sweep.serve.quantization import cpu_features
from sweep.serve.readout import read, task_of

BATCHES = {1: 16, 32: 4}  # requests per round at each batch size


def backends(best: Path, threads: int) -> Dict[str, Callable]:
    """{backend: answer(texts)} for torch and each model the export holds: the forward pass and the
    run's task reading its outputs (sweep/serve/readout.py), as predict.py serves it."""
    import torch

    from sweep.model.device import resolve_precision
    from sweep.serve.checkpoint import load_checkpoint
    from sweep.serve.classify import model_outputs
    from sweep.serve.onnx_runtime import OnnxClassifier

    torch.set_num_threads(threads)
    meta = read_meta(best)
    model, tokenizer = load_checkpoint(best)
    cpu = torch.device("cpu")
    fp32 = resolve_precision("fp32", cpu)

    def eager(texts):
        return model_outputs(model, tokenizer, texts, None, meta, len(texts), cpu, fp32)

    served = {"torch": eager}
    for backend, name in ONNX_MODELS.items():
        if (best / ONNX_DIR / name).is_file():
            served[backend] = OnnxClassifier(best / ONNX_DIR, backend, threads).outputs
    return {backend: (lambda texts, outputs=outputs: read(outputs(texts), meta)) for backend, outputs in served.items()}


def bench_inference(run_dir: Path, rounds: int, threads: int) -> List[Dict[str, Any]]:
    """One row per backend and batch size: samples/s, p50 and p95 latency (ms) per request."""
    from sweep.serve.onnx_export import locate, test_rows

    run_dir, best = locate(Path(run_dir))
    needed = max(size * count for size, count in BATCHES.items())
    texts = test_rows(run_dir, needed)[0]
    texts = (texts * -(-needed // len(texts)))[:needed]  # a test split smaller than a round's requests: repeated
    served = backends(best, threads)
    latencies: Dict[tuple, List[float]] = {(b, size): [] for b in served for size in BATCHES}
    for probabilities in served.values():  # warm-up: each backend's first call
        probabilities(texts[:32])
    for round_ in range(rounds):
        order = list(served) if round_ % 2 == 0 else list(served)[::-1]
        for size, count in BATCHES.items():
            for backend in order:
                for start in range(0, size * count, size):
                    started = time.perf_counter()
                    served[backend](texts[start : start + size])
                    latencies[(backend, size)].append(time.perf_counter() - started)
    rows = []
    for (backend, size), seconds in latencies.items():
        seconds = np.asarray(seconds)
        rows.append(
            {
                "backend": backend,
                "batch": size,
                "samples_per_s": size * len(seconds) / seconds.sum(),
                "p50_ms": 1000 * float(np.percentile(seconds, 50)),
                "p95_ms": 1000 * float(np.percentile(seconds, 95)),
            }
        )
    return rows


def print_inference(run_dir: Path, rows: List[Dict[str, Any]], rounds: int, threads: int) -> None:
    from sweep.serve.onnx_export import locate

    _, best = locate(Path(run_dir))
    meta = read_meta(best)
    checked = (read_json(best / ONNX_DIR / EXPORT_FILE) or {}).get("check", {})
    print(f"{best}: max_len {meta['max_len']}, {threads} threads, {rounds} rounds; a request: tokenize + forward")
    cpu = cpu_features()  # int8's speed depends on it far more than fp32's (sweep/serve/quantization.py)
    sets = ", ".join(name for name in ("avx2", "avx512", "vnni") if cpu[name]) or "none of avx2, avx512, vnni"
    print(f"CPU: {cpu['model']} ({cpu['machine']}; {sets})")
    headline = test_headline(task_of(meta))
    title = headline.replace("_", " ", 1)
    print(f"{'backend':<10} {'batch':>5} {'samples/s':>10} {'x torch':>8} {'p50 ms':>8} {'p95 ms':>8} {title:>14}")
    torch_rate = {row["batch"]: row["samples_per_s"] for row in rows if row["backend"] == "torch"}
    for row in sorted(rows, key=lambda r: (r["batch"], r["backend"] != "torch", r["backend"])):
        test = checked.get(row["backend"], {}).get(headline)
        print(
            f"{row['backend']:<10} {row['batch']:>5} {row['samples_per_s']:>10.1f} "
            f"{row['samples_per_s'] / torch_rate[row['batch']]:>7.2f}x {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
            f"{'' if test is None else f'{test:.4f}':>14}"
        )
    if checked:
        agree = ", ".join(f"{b} {checked[b]['agreement']:.1%}" for b in ONNX_MODELS if b in checked)
        print(
            f"{title} and {checked.get('answers', 'labels')} agreeing with torch, from the export's check on "
            f"{checked['rows']} test rows: {agree}"
        )
    else:
        print("no export in best/onnx: encoder-sweep-export RUN_DIR --quantize int8 adds the onnx backends")
