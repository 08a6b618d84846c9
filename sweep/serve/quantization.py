"""The int8 model of an export: ONNX Runtime's dynamic quantization with settings that give the same
integers on every x86-64 CPU, the CPU it ran on, and the layer kinds that may stay fp32.

Why 7-bit weights (reduce_range): ONNX Runtime multiplies uint8 activations by int8 weights. With
VNNI (AVX-512 VNNI, AVX-VNNI) the pair products are summed in 32 bits; without it (AVX2 only, e.g.
AMD EPYC before Zen 4) the kernel adds pairs of products in 16 bits first, and 255 x 127 x 2
overflows them: the sums saturate and the output drifts. With weights in [-64, 63] no pair can
overflow, so both kernels compute the same exact integers: the agreement measured at export holds
on every x86-64 CPU it is served on. Measured on an AVX2-only AMD EPYC (MiniLM, LoRA merged, 2,000
IMDB test reviews): 98.00% of torch's labels with 7-bit weights, 98.05% with 8-bit ones, at the same
speed (131 vs 127 samples/s), so nothing is lost by choosing the setting that holds everywhere."""

import ast
import platform
import re
from pathlib import Path
from typing import Dict, List, Sequence

from sweep.errors import ExportError

WEIGHT_TYPE = "int8"
REDUCE_RANGE = True  # 7-bit weights: no 16-bit saturation on CPUs without VNNI (see above)
PER_CHANNEL = True  # a scale per output row: MiniLM fine-tuned one epoch, per tensor 96.4% of torch's labels, 98.8%
QUANTIZED_OPS = ("MatMul", "Attention", "Gather")  # ONNX Runtime's dynamic int8 kernels this graph has
SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # torch.onnx's record of the module each node came from


def cpu_features() -> Dict[str, object]:
    """The CPU at hand and the instruction sets that decide ONNX Runtime's int8 kernel (Linux's
    /proc/cpuinfo; elsewhere the flags are unknown: None)."""
    flags = None
    model = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = set(value.split())
    has = (lambda *names: any(n in flags for n in names)) if flags is not None else (lambda *names: None)
    return {
        "machine": platform.machine(),
        "model": model,
        "avx2": has("avx2"),
        "avx512": has("avx512f"),
        "vnni": has("avx512_vnni", "avx_vnni"),
    }


def settings(kept_fp32: Sequence[str]) -> Dict[str, object]:
    """export.json's record of how the int8 model was made and where its check holds."""
    return {
        "weight_type": WEIGHT_TYPE,
        "reduce_range": REDUCE_RANGE,
        "per_channel": PER_CHANNEL,
        "kept_fp32": list(kept_fp32),
        "exported_on": cpu_features(),
        "holds_on": "every x86-64 CPU, with VNNI or without (7-bit weights: the same integers on each kernel)",
    }


def _layer_kind(module_name: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".*", module_name)


def _node_kind(node) -> str:
    """The classifier's module a node computes, its layer numbers as * (encoder.encoder.layer.*.output.dense):
    one kind for the same layer of every block. A node torch.onnx left unnamed is its op type."""
    scopes = next((p.value for p in node.metadata_props if p.key == SCOPES_KEY), None)
    if not scopes:
        return node.op_type
    module = ast.literal_eval(scopes)[-2]  # the last is the op itself (linear_5), the one before its module
    module = module.split(".", 1)[1] if module.startswith("model.") else module  # the export's wrapper
    return _layer_kind(module)


def vector_products(graph) -> List[str]:
    """The MatMuls by a constant vector (attention pooling's learned query): onnxruntime's per-channel
    int8 kernel takes only a matrix there ('b zero point is not valid'); they stay fp32, a vector each."""
    ranks = {tensor.name: len(tensor.dims) for tensor in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and ranks.get(node.input[1], 2) != 2]


def load_graph(fp32: Path):
    import onnx

    return onnx.load(str(fp32), load_external_data=False).graph


def layer_kinds(graph) -> Dict[str, List[str]]:
    """{layer kind: its quantizable nodes} of the fp32 graph, in graph order."""
    constants = {tensor.name for tensor in graph.initializer}
    vectors = set(vector_products(graph))
    kinds: Dict[str, List[str]] = {}
    for node in graph.node:
        weighted = any(name in constants for name in node.input)
        if node.op_type in QUANTIZED_OPS and weighted and node.name not in vectors:
            kinds.setdefault(_node_kind(node), []).append(node.name)
    return kinds


def require_kinds(model, kept_fp32: Sequence[str]) -> None:
    """--keep-fp32 names modules of the classifier (as layer kinds), checked before anything is written;
    one line listing its linear and embedding layers when it does not."""
    from torch import nn

    kinds = {_layer_kind(name) for name, _ in model.named_modules() if name}
    unknown = [kind for kind in kept_fp32 if kind not in kinds]
    if unknown:
        weighted = (nn.Linear, nn.Embedding)
        layers = dict.fromkeys(_layer_kind(n) for n, m in model.named_modules() if isinstance(m, weighted))
        raise ExportError(
            f"--keep-fp32 {unknown[0]}: not a layer kind of this model; its linear and embedding layers: "
            f"{', '.join(layers)} (and the modules that hold them)"
        )


def quantize(fp32: Path, int8: Path, kept_fp32: Sequence[str] = ()) -> None:
    """int8 weights (7-bit range, a scale per channel), activations quantized per batch; the layer
    kinds in kept_fp32 and the vector products stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = load_graph(fp32)
    kinds = layer_kinds(graph)
    excluded = vector_products(graph) + [node for kind in kept_fp32 for node in kinds.get(kind, [])]
    quantize_dynamic(
        str(fp32),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=PER_CHANNEL,
        reduce_range=REDUCE_RANGE,
        nodes_to_exclude=excluded,
    )
