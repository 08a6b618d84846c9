"""The export's check: each ONNX model's predictions on the run's test rows against torch's, read as
the run's task reads them (sweep/serve/readout.py). fp32: every answer torch's, probabilities (or a
regression's number, in target standard deviations) within 1e-4; int8: at least 98% of the answers
(the class, the label set, or the number within a tenth of the target's standard deviation), and where
int8 falls short, the layer kinds whose MatMuls kept in fp32 bring it back (the costliest first)."""

import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from sweep.config.metrics import headline
from sweep.rundir import ONNX_MODELS
from sweep.serve.onnx_runtime import OnnxClassifier
from sweep.serve.quantization import layer_kinds, load_graph, quantize
from sweep.serve.readout import ANSWER_OF, DIFFERENCE_OF, agrees, difference, read, task_of

FP32_TOLERANCE = 1e-4  # the largest difference from torch an fp32 export may show (see readout.difference)
INT8_MIN_AGREEMENT = 0.98  # the share of torch's answers an int8 export must give
CHECK_BATCH = 32


def test_figures(outputs, labels, meta) -> Dict[str, float]:
    """The task's test metrics of these outputs (sweep/model/tasks.py, as training computes them), as
    test_<name>: test_acc, test_micro_f1, test_pearson..."""
    import numpy as np
    import torch

    from sweep.model.tasks import make_task

    task = task_of(meta)
    target = (meta["target_mean"], meta["target_std"]) if task == "regression" else None
    rule = make_task(task, meta.get("threshold", 0.5), target)
    if task == "multi_label":  # label ids per row -> a row of 0/1 per label
        hot = np.zeros(outputs.shape, dtype=np.float32)
        for row, ids in enumerate(labels):
            hot[row, list(ids)] = 1.0
        truth = torch.from_numpy(hot)
    else:
        truth = torch.tensor(np.asarray(labels), dtype=torch.float64 if task == "regression" else torch.long)
    found = rule.metrics(truth, rule.outputs(torch.from_numpy(outputs)))
    return {f"test_{name}": value for name, value in found.items() if value is not None}


def compared(outputs, reference_outputs, meta) -> Dict[str, float]:
    """How a backend's outputs answer against torch's: the share of the same answers and the largest
    difference (max_prob_diff, or max_std_diff for regression)."""
    reading, reference = read(outputs, meta), read(reference_outputs, meta)
    return {
        "agreement": float(agrees(reading, reference, meta).mean()),
        f"max_{DIFFERENCE_OF[task_of(meta)]}_diff": float(difference(reading, reference, meta).max()),
    }


def test_headline(task: str) -> str:
    """The check's test figure to show first: the task's headline (test_acc, test_micro_f1, test_pearson)."""
    return "test_" + headline(task, "test").split("/")[1]


def figure(key: str, found: Dict[str, Any]) -> str:
    """A test figure as `test micro_f1 0.8123`."""
    return f"{key.replace('_', ' ', 1)} {found[key]:.4f}"


def max_diff(found: Dict[str, Any]):
    """A backend's largest difference from torch, whatever the task measured it in."""
    return found.get("max_prob_diff", found.get("max_std_diff"))


def check(model, tokenizer, meta, directory: Path, backends, rows) -> Tuple[Dict[str, Any], Any]:
    """Each backend's outputs on the test rows against torch's: agreement, the largest difference, the
    task's test figures and samples/s (batch 32, this process's threads); and torch's outputs (the
    reference a remedy is measured against)."""
    import torch

    from sweep.model.device import resolve_precision
    from sweep.serve.classify import model_outputs

    texts, pairs, labels = rows
    cpu, threads = torch.device("cpu"), torch.get_num_threads()
    fp32 = resolve_precision("fp32", cpu)

    def torch_outputs(texts, pairs, batch):
        return model_outputs(model, tokenizer, texts, pairs, meta, batch, cpu, fp32)

    passes = {"torch": torch_outputs}
    passes.update({b: OnnxClassifier(directory, b, threads).outputs for b in backends})
    found = {}
    for backend, outputs in passes.items():
        started = time.perf_counter()
        logits = outputs(texts, pairs, CHECK_BATCH)
        found[backend] = (logits, len(texts) / (time.perf_counter() - started))
    reference = found["torch"][0]
    results: Dict[str, Any] = {"rows": len(texts), "batch_size": CHECK_BATCH, "threads": threads}
    results["task"], results["answers"] = task_of(meta), ANSWER_OF[task_of(meta)]
    for backend, (logits, rate) in found.items():
        results[backend] = {**test_figures(logits, labels, meta), "samples_per_s": rate}
        if backend != "torch":
            results[backend].update(compared(logits, reference, meta))
    return results, reference


def int8_missed(results: Dict[str, Any]) -> bool:
    return "onnx-int8" in results and results["onnx-int8"]["agreement"] < INT8_MIN_AGREEMENT


def int8_agreement(directory: Path, kept_fp32: Sequence[str], rows, reference, meta) -> Tuple[float, float]:
    """(agreement, mean difference) with torch of the int8 model quantized with these layer kinds kept
    fp32, written over directory's int8 model."""
    quantize(directory / ONNX_MODELS["onnx"], directory / ONNX_MODELS["onnx-int8"], kept_fp32)
    texts, pairs, _ = rows
    reading = read(OnnxClassifier(directory, "onnx-int8").outputs(texts, pairs, CHECK_BATCH), meta)
    expected = read(reference, meta)
    return float(agrees(reading, expected, meta).mean()), float(difference(reading, expected, meta).mean())


def remedy(directory: Path, kept_fp32: Sequence[str], rows, reference, meta) -> Dict[str, Any]:
    """Where the int8 model missed the agreement: each layer kind kept fp32 alone (its agreement),
    then kinds added in that order, the costliest first, until the agreement is met (all of them: the
    fp32 graph, which meets it). The int8 model of the export is left as it was."""
    int8 = directory / ONNX_MODELS["onnx-int8"]
    original = int8.with_suffix(".checked")
    shutil.copy2(int8, original)
    try:
        kinds = [kind for kind in layer_kinds(load_graph(directory / ONNX_MODELS["onnx"])) if kind not in kept_fp32]
        alone = {kind: int8_agreement(directory, [*kept_fp32, kind], rows, reference, meta) for kind in kinds}
        ranked = sorted(kinds, key=lambda kind: (-alone[kind][0], alone[kind][1]))
        chosen: List[str] = list(kept_fp32)
        agreement = None
        for kind in ranked:
            chosen.append(kind)
            agreement = int8_agreement(directory, chosen, rows, reference, meta)[0]
            if agreement >= INT8_MIN_AGREEMENT:
                break
    finally:
        shutil.move(original, int8)
    return {
        "costliest": ranked[0] if ranked else None,
        "agreement_by_kind_kept_fp32": {kind: alone[kind][0] for kind in ranked},
        "keep_fp32": chosen,
        "agreement": agreement,
    }


def keep_fp32_flags(kinds: Sequence[str]) -> str:
    return " ".join(f"--keep-fp32 '{kind}'" for kind in kinds)


def shortfalls(results: Dict[str, Any], found_remedy: Dict[str, Any] = None) -> List[str]:
    """What the check asks and the export did not reach ([]: it passed), each with what fixes it."""
    failed = []
    fp32, answers = results["onnx"], results.get("answers", "labels")
    what = "predictions (in target standard deviations)" if "max_std_diff" in fp32 else "probabilities"
    if fp32["agreement"] < 1.0:
        failed.append(f"onnx gives torch's {answers} on {fp32['agreement']:.1%} of the rows, not all")
    if max_diff(fp32) > FP32_TOLERANCE:
        failed.append(f"onnx's {what} differ from torch's by up to {max_diff(fp32):.1e} (> {FP32_TOLERANCE})")
    if int8_missed(results):
        agreement = results["onnx-int8"]["agreement"]
        said = f"onnx-int8 gives torch's {answers} on {agreement:.1%} of the rows (< {INT8_MIN_AGREEMENT:.0%})"
        if found_remedy and found_remedy["costliest"]:
            costliest = found_remedy["costliest"]
            said += (
                f"; the layer kind that costs the most is {costliest} (kept fp32: "
                f"{found_remedy['agreement_by_kind_kept_fp32'][costliest]:.1%}); "
                f"{keep_fp32_flags(found_remedy['keep_fp32'])} gives {found_remedy['agreement']:.1%}"
            )
        failed.append(said)
    return failed
