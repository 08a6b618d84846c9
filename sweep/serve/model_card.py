"""best/README.md: the model card of a completed run, in the Hugging Face hub's layout (a YAML
metadata block, then prose): the cell's config, its test figures with the seed, the training cost,
how to load it, and, once sweep/export.py ran, the export and its agreement with torch. Written from
the run dir's own files, so it says nothing the run did not record; rewritten by each export."""

from pathlib import Path
from typing import Any, Dict, List, Optional

from sweep.rundir import (
    BEST_DIR,
    CLASSIFIER_FILE,
    CONFIG_FILE,
    EXPORT_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_DIR,
    atomic_path,
    read_json,
    read_yaml,
)

# (metrics.json field, the hub's metric type, its name on the card)
TEST_FIGURES = (  # (metrics.json key, the hub's metric type, its name here): those the run's task has
    ("test/acc", "accuracy", "accuracy"),
    ("test/micro_f1", "f1", "micro-F1"),
    ("test/macro_f1", "f1", "macro-F1"),
    ("test/f1", "f1", "F1 (positive class)"),
    ("test/subset_acc", "accuracy", "subset accuracy"),
    ("test/pearson", "pearsonr", "Pearson r"),
    ("test/spearman", "spearmanr", "Spearman r"),
    ("test/mse", "mse", "MSE"),
)
# what the head's outputs become, by task (best/classifier.json's task; none: single_label)
READ_OUTPUTS = {
    "single_label": 'probs = model(batch["input_ids"], batch["attention_mask"]).softmax(-1)',
    "multi_label": 'probs = model(batch["input_ids"], batch["attention_mask"]).sigmoid()  # a label where >= {threshold}',
    "regression": 'value = model(batch["input_ids"], batch["attention_mask"])[:, 0] * {target_std} + {target_mean}',
}


def metadata(config: Dict[str, Any], metrics: Dict[str, Any]) -> List[str]:
    """The hub's metadata block: library, task, base model, dataset and the test metrics (model-index)."""
    model, data = config.get("model", {}), config.get("data", {})
    dataset = data.get("hub_id") or data.get("name") or "local"
    lines = ["---", "library_name: transformers", "pipeline_tag: text-classification"]
    if not model.get("tiny"):  # a random-init tiny model has no base model on the hub
        lines.append(f"base_model: {model.get('id')}")
    kinds = dict.fromkeys(kind for key, kind, _ in TEST_FIGURES if metrics.get(key) is not None) or ["accuracy", "f1"]
    lines += [f"datasets:\n- {dataset}", "metrics:\n" + "\n".join(f"- {k}" for k in kinds), "tags:\n- encoder-sweep"]
    lines += [f"- pooling-{metrics.get('pooling')}", f"- {metrics.get('method')}"]
    lines += ["model-index:", f"- name: {metrics.get('model')}-{metrics.get('pooling')}-{metrics.get('method')}"]
    lines += ["  results:", "  - task:", "      type: text-classification"]
    lines += ["    dataset:", f"      name: {dataset}", f"      type: {dataset}", "      split: test", "    metrics:"]
    for key, kind, name in TEST_FIGURES:
        if metrics.get(key) is not None:
            lines += [f"    - type: {kind}", f"      name: test {name}", f"      value: {metrics[key]:.4f}"]
    return lines + ["---"]


def config_table(config: Dict[str, Any], metrics: Dict[str, Any], meta: Dict[str, Any]) -> List[str]:
    model, data = config.get("model", {}), config.get("data", {})
    optim, trainer = config.get("optim", {}), config.get("trainer", {})
    rows = [
        ("encoder", f"{model.get('name')} (`{model.get('id')}`{', tiny random init' if model.get('tiny') else ''})"),
        ("pooling", f"{meta.get('pooling')} (last {meta.get('pooling_layers', 1)} layer(s))"),
        ("method", metrics.get("method")),
        (
            "data",
            f"{data.get('name')}: {metrics.get('train_samples')} train / {metrics.get('valid_samples')} "
            f"valid / {metrics.get('test_samples')} test rows",
        ),
        ("tokens", tokens_read(meta, metrics)),
        ("optimizer", f"{optim.get('name')}, lr {optim.get('lr')}, scheduler {optim.get('scheduler')}"),
        (
            "training",
            f"{metrics.get('epochs_run')} of {trainer.get('epochs')} epochs, batch {trainer.get('batch_size')}, "
            f"{metrics.get('precision')} on {metrics.get('device')}; best epoch {metrics.get('best_epoch')}",
        ),
        ("seed", metrics.get("seed")),
        ("labels", ", ".join(meta.get("label_names") or [])),
    ]
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def number(value: Any, spec: str) -> str:
    """A recorded figure as the card shows it; n/a where the run recorded none."""
    return "n/a" if value is None else format(value, spec)


def results(metrics: Dict[str, Any]) -> List[str]:
    figures = [f"{name} {number(metrics.get(key), '.4f')}" for key, _, name in TEST_FIGURES if key in metrics]
    lines = [f"Test ({metrics.get('test_samples')} rows, seed {metrics.get('seed')}): " + ", ".join(figures) + "."]
    cost = [
        f"training {number(metrics.get('train_seconds'), '.0f')} s "
        f"({number(metrics.get('train_samples_per_s'), '.1f')} samples/s)",
        f"inference {number(metrics.get('test_samples_per_s'), '.1f')} samples/s",
        f"peak memory {number(metrics.get('peak_memory_mib'), '.0f')} MiB ({metrics.get('peak_memory_kind')})",
        f"{number(metrics.get('params'), ',')} parameters, {number(metrics.get('trainable_params'), ',')} trained",
    ]
    return lines + ["", f"Cost on {metrics.get('device')}: " + "; ".join(cost) + "."]


def tokens_read(meta: Dict[str, Any], metrics: Dict[str, Any]) -> str:
    """What the run read of a text, and how many test texts were longer (sweep/data/lengths.py)."""
    read = f"max_len {meta.get('max_len')}, truncation {meta.get('truncation', 'head')}"
    if meta.get("truncation") == "chunks":
        read += (
            f": up to {meta.get('max_chunks')} windows of max_len tokens (overlap {meta.get('chunk_stride', 0)}),"
            f" each pooled by {meta.get('pooling')}, pooled by {meta.get('window_pooling')} over the windows"
        )
    cut = metrics.get("data/test_cut_frac")
    return read + (f"; {cut:.1%} of the test texts longer than that" if cut is not None else "")


def usage(meta: Dict[str, Any]) -> List[str]:
    pairs = meta.get("text_pair_column")
    given = f"--file pairs.csv --text-column text --pair-column {pairs}" if pairs else '"a gripping film"'
    return [
        "```bash",
        f"python sweep/predict.py RUN_DIR {given}",
        "```",
        "With plain transformers: the encoder is a `save_pretrained` checkpoint, the pooling and the linear head",
        f"are in `head.safetensors` (see `{CLASSIFIER_FILE}`); `sweep.model.classifier.Classifier` puts them together:",
        "",
        "```python",
        "from sweep.model.classifier import Classifier",
        "from transformers import AutoTokenizer",
        'model, tokenizer = Classifier.from_pretrained("best"), AutoTokenizer.from_pretrained("best")',
        batch_line(meta),
        read_line(meta),
        "```",
    ]


def read_line(meta: Dict[str, Any]) -> str:
    line = READ_OUTPUTS[meta.get("task", "single_label")].format(**meta)
    if meta.get("truncation") == "chunks":  # the forward's third input: how many windows each text has
        line = line.replace('batch["attention_mask"])', 'batch["attention_mask"], batch["windows"])')
    return line


def batch_line(meta: Dict[str, Any]) -> str:
    if meta.get("truncation") == "chunks":  # the windows as the run cut them, and how many each text has
        return (
            "from sweep.serve.checkpoint import read_meta; from sweep.serve.classify import encode\n"
            'batch = encode(tokenizer, ["a gripping film"], None, read_meta("best"))'
        )
    return f'batch = tokenizer(["a gripping film"], truncation=True, max_length={meta.get("max_len")}, return_tensors="pt")'


def export_section(record: Dict[str, Any]) -> List[str]:
    from sweep.serve.export_check import max_diff, test_headline

    checked = record.get("check", {})
    lines = [
        "## ONNX export",
        "",
        f"`{ONNX_DIR}/`: {', '.join(record.get('models', {}).values())}, opset "
        f"{record.get('opset')}, by {record.get('exporter')}; served with `predict.py RUN_DIR --backend onnx` "
        f"(or `onnx-int8`). Checked on {checked.get('rows')} test rows against torch:",
        "",
    ]
    headline, unit = (
        test_headline(checked.get("task", "single_label")),
        "target std" if checked.get("task") == "regression" else "prob",
    )
    lines += [
        f"| backend | {checked.get('answers', 'labels')} agree | max diff ({unit}) | {headline.replace('_', ' ', 1)} "
        "| samples/s |",
        "|---|---|---|---|---|",
    ]
    for backend in record.get("models", {}):
        found = checked.get(backend, {})
        figures = [(found.get("agreement"), ".2%"), (max_diff(found), ".1e"), (found.get(headline), ".4f")]
        figures.append((found.get("samples_per_s"), ".0f"))
        lines.append(f"| {backend} | " + " | ".join(number(value, spec) for value, spec in figures) + " |")
    if record.get("failed_check"):
        lines += ["", "**The check failed:** " + "; ".join(record["failed_check"]) + "."]
    return lines


def render(run_dir: Path, config: Dict[str, Any]) -> str:
    metrics = read_json(run_dir / METRICS_FILE) or {}
    meta = read_json(run_dir / BEST_DIR / CLASSIFIER_FILE) or {}
    title = f"# {metrics.get('model')} · {metrics.get('pooling')} pooling · {metrics.get('method')}"
    lines = metadata(config, metrics) + ["", title, ""]
    lines += [
        "A text classifier trained by encoder-sweep as one cell of a grid: the encoder, a pooling of its",
        "token states into one vector, a linear head.",
        "",
        "## Cell",
        "",
    ]
    lines += config_table(config, metrics, meta) + ["", "## Results", ""] + results(metrics)
    lines += ["", "## How to load it", ""] + usage(meta)
    record = read_json(run_dir / BEST_DIR / ONNX_DIR / EXPORT_FILE)
    if record:
        lines += [""] + export_section(record)
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: Path, config: Optional[Dict[str, Any]] = None) -> None:
    """best/README.md of a completed run (nothing where the run saved no best/). config: the run's resolved
    config; read from its .hydra/config.yaml when not given (a run trained in-process may have none)."""
    run_dir = Path(run_dir)
    if config is None and (run_dir / CONFIG_FILE).is_file():
        config = read_yaml(run_dir / CONFIG_FILE)
    if (run_dir / BEST_DIR / CLASSIFIER_FILE).is_file():
        with atomic_path(run_dir / BEST_DIR / MODEL_CARD_FILE) as tmp:
            tmp.write_text(render(run_dir, config or {}))
