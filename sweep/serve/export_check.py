"""The export's check: each ONNX model's predictions on the run's test rows against torch's (fp32:
every label, probabilities within 1e-4; int8: at least 98% of the labels), and where int8 falls
short, the layer kinds whose MatMuls kept in fp32 bring it back (the costliest first)."""

import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from sweep.rundir import ONNX_MODELS
from sweep.serve.onnx_runtime import OnnxClassifier
from sweep.serve.quantization import layer_kinds, load_graph, quantize

FP32_TOLERANCE = 1e-4  # the largest probability difference from torch an fp32 export may show
INT8_MIN_AGREEMENT = 0.98  # the share of torch's labels an int8 export must give
CHECK_BATCH = 32


def check(model, tokenizer, meta, directory: Path, backends, rows) -> Tuple[Dict[str, Any], Any]:
    """Each backend's predictions on the test rows against torch's: label agreement, the largest
    probability difference, test accuracy and samples/s (batch 32, this process's threads); and
    torch's probabilities (the reference a remedy is measured against)."""
    import numpy as np
    import torch

    from sweep.model.device import resolve_precision
    from sweep.serve.classify import model_outputs, softmax

    texts, pairs, labels = rows
    cpu, threads = torch.device("cpu"), torch.get_num_threads()
    fp32 = resolve_precision("fp32", cpu)

    def torch_probabilities(texts, pairs, batch):
        truncation = meta.get("truncation", "head")
        return softmax(model_outputs(model, tokenizer, texts, pairs, meta["max_len"], batch, cpu, fp32, truncation))

    passes = {"torch": torch_probabilities}
    passes.update({b: OnnxClassifier(directory, b, threads).probabilities for b in backends})
    labels, found = np.asarray(labels), {}
    for backend, probabilities in passes.items():
        started = time.perf_counter()
        probs = probabilities(texts, pairs, CHECK_BATCH)
        found[backend] = (probs, len(texts) / (time.perf_counter() - started))
    reference = found["torch"][0]
    results: Dict[str, Any] = {"rows": len(texts), "batch_size": CHECK_BATCH, "threads": threads}
    for backend, (probs, rate) in found.items():
        results[backend] = {"test_acc": float((probs.argmax(1) == labels).mean()), "samples_per_s": rate}
        if backend != "torch":
            results[backend]["agreement"] = float((probs.argmax(1) == reference.argmax(1)).mean())
            results[backend]["max_prob_diff"] = float(np.abs(probs - reference).max())
    return results, reference


def int8_missed(results: Dict[str, Any]) -> bool:
    return "onnx-int8" in results and results["onnx-int8"]["agreement"] < INT8_MIN_AGREEMENT


def int8_agreement(directory: Path, kept_fp32: Sequence[str], rows, reference) -> Tuple[float, float]:
    """(label agreement, mean probability difference) with torch of the int8 model quantized with
    these layer kinds kept fp32, written over directory's int8 model."""
    import numpy as np

    quantize(directory / ONNX_MODELS["onnx"], directory / ONNX_MODELS["onnx-int8"], kept_fp32)
    texts, pairs, _ = rows
    probs = OnnxClassifier(directory, "onnx-int8").probabilities(texts, pairs, CHECK_BATCH)
    return float((probs.argmax(1) == reference.argmax(1)).mean()), float(np.abs(probs - reference).mean())


def remedy(directory: Path, kept_fp32: Sequence[str], rows, reference) -> Dict[str, Any]:
    """Where the int8 model missed the agreement: each layer kind kept fp32 alone (its agreement),
    then kinds added in that order, the costliest first, until the agreement is met (all of them: the
    fp32 graph, which meets it). The int8 model of the export is left as it was."""
    int8 = directory / ONNX_MODELS["onnx-int8"]
    original = int8.with_suffix(".checked")
    shutil.copy2(int8, original)
    try:
        kinds = [kind for kind in layer_kinds(load_graph(directory / ONNX_MODELS["onnx"])) if kind not in kept_fp32]
        alone = {kind: int8_agreement(directory, [*kept_fp32, kind], rows, reference) for kind in kinds}
        ranked = sorted(kinds, key=lambda kind: (-alone[kind][0], alone[kind][1]))
        chosen: List[str] = list(kept_fp32)
        agreement = None
        for kind in ranked:
            chosen.append(kind)
            agreement = int8_agreement(directory, chosen, rows, reference)[0]
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
    fp32 = results["onnx"]
    if fp32["agreement"] < 1.0:
        failed.append(f"onnx gives torch's label on {fp32['agreement']:.1%} of the rows, not all")
    if fp32["max_prob_diff"] > FP32_TOLERANCE:
        failed.append(
            f"onnx's probabilities differ from torch's by up to {fp32['max_prob_diff']:.1e} (> {FP32_TOLERANCE})"
        )
    if int8_missed(results):
        agreement = results["onnx-int8"]["agreement"]
        said = f"onnx-int8 gives torch's label on {agreement:.1%} of the rows (< {INT8_MIN_AGREEMENT:.0%})"
        if found_remedy and found_remedy["costliest"]:
            costliest = found_remedy["costliest"]
            said += (
                f"; the layer kind that costs the most is {costliest} (kept fp32: "
                f"{found_remedy['agreement_by_kind_kept_fp32'][costliest]:.1%}); "
                f"{keep_fp32_flags(found_remedy['keep_fp32'])} gives {found_remedy['agreement']:.1%}"
            )
        failed.append(said)
    return failed
