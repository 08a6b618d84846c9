"""A run's config as it ran: .hydra/config.yaml flattened to dotted keys, with interpolations and
`auto` settings replaced by what they became, so that two spellings of one setup compare equal."""

import json
import re
from typing import Any, Dict

from sweep.config.neutral import ADDED_KNOB_DEFAULTS

# torch.compile mode recorded in metrics.json -> the trainer.compile setting that asks for it
COMPILE_SETTING = {None: "false", "default": "true", "reduce-overhead": "reduce-overhead"}
REFERENCE = re.compile(r"\$\{([\w.]+)\}")  # an OmegaConf interpolation of another key: ${seed}


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in flatten(sub, f"{prefix}{key}.").items()}
    # a cell key must be hashable and print as written: lists become their JSON text
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else node}


def resolve_references(config: Dict[str, Any]) -> Dict[str, Any]:
    """`split_seed: ${seed}` -> the seed's value, so that it equals a run that wrote the number itself;
    anything else OmegaConf would compute (custom resolvers) stays as written."""

    def value(text: Any, depth: int = 0) -> Any:
        match = REFERENCE.fullmatch(text) if isinstance(text, str) else None
        return value(config[match[1]], depth + 1) if match and match[1] in config and depth < 10 else text

    return {key: value(v) for key, v in config.items()}


def resolved_by_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """What the run recorded that its `auto` settings became, by config key: precision, the kind of
    device (cuda:0 and cuda:1 are one setup), and the compile setting that ran (eager after a fallback)."""
    resolved = {}
    if metrics.get("precision"):
        resolved["trainer.precision"] = metrics["precision"]
    if metrics.get("device"):
        resolved["trainer.device"] = str(metrics["device"]).split(":")[0]
    if "compile_mode" in metrics:
        mode = None if metrics.get("compile_error") else metrics["compile_mode"]
        resolved["trainer.compile"] = COMPILE_SETTING.get(mode, str(mode))
    return resolved


def resolve_config(config: Dict[str, Any], metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Cells compare what ran, not how it was spelled: interpolations and `auto` become their values."""
    config = resolve_references(config)
    if config:  # a recorded config from before a knob (or a whole group: method) did what its default does
        for key, default in ADDED_KNOB_DEFAULTS.items():
            config.setdefault(key, default)
    if "trainer.compile" in config:  # YAML false and the string "false" are one setting
        config["trainer.compile"] = str(config["trainer.compile"]).lower()
    config.update({k: v for k, v in resolved_by_metrics(metrics).items() if k in config})
    return config
