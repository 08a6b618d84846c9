"""What every benchmark of `sweep/bench.py` shares: the models it builds (random init, no download),
the batches, the two sides timed in interleaved blocks, the device and threads, and where it ran."""

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from sweep.config.schema import FAMILY_MODELS, OptimConfig
from sweep.model.device import resolve_device

MODELS = {  # --model: (family, tiny)
    "bert-tiny": ("bert", True),
    "modernbert-tiny": ("modernbert", True),
    "bert": ("bert", False),
    "modernbert": ("modernbert", False),
}
SEED_OPTIM = OptimConfig(name="adam")  # the schema's base values are the seed recipe


class _TinyVocab:
    """What sweep.model.tiny.tiny_config reads from a tokenizer (size, special ids in SPECIAL_TOKENS order),
    so the tiny configs come from the project's own builder without training a tokenizer."""

    pad_token_id, cls_token_id, sep_token_id = 0, 2, 3

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def build_config(name: str):
    """The HF config of --model NAME: a family's tiny architecture (as model.tiny=true builds it),
    or its base size."""
    from transformers import BertConfig, ModernBertConfig

    family, tiny = MODELS[name]
    if tiny:
        from sweep.model.tiny import tiny_config  # imports tokenizers, which ships with transformers

        architecture = FAMILY_MODELS[family]().tiny_config
        return tiny_config(family, _TinyVocab(architecture["vocab_size"]), architecture)
    return BertConfig() if family == "bert" else ModernBertConfig(vocab_size=50368)  # *-base sizes


def make_batches(config, n: int, batch_size: int, max_len: int, device, token_types: bool, seed: int = 0):
    """Random ids in [5, vocab) padded to max_len (the project's default padding) with real lengths
    spread over [max_len / 4, max_len]; [CLS] first, [SEP] last; labels 0/1."""
    gen = torch.Generator().manual_seed(seed)
    cls_id = getattr(config, "cls_token_id", None) or 2
    sep_id = getattr(config, "sep_token_id", None) or 3
    batches = []
    for _ in range(n):
        ids = torch.randint(5, config.vocab_size, (batch_size, max_len), generator=gen)
        lengths = torch.randint(max(max_len // 4, 2), max_len + 1, (batch_size,), generator=gen)
        mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
        ids = ids.masked_fill(mask == 0, config.pad_token_id or 0)
        ids[:, 0] = cls_id
        ids[torch.arange(batch_size), lengths - 1] = sep_id
        inputs = {"input_ids": ids, "attention_mask": mask}
        if token_types:  # BERT takes them, ModernBERT has none (as encoder_input_names decides)
            inputs["token_type_ids"] = torch.zeros_like(ids)
        labels = torch.randint(0, 2, (batch_size,), generator=gen)
        batches.append(({k: v.to(device) for k, v in inputs.items()}, labels.to(device)))
    return batches


@dataclass
class Sides:
    """The two train steps under comparison, on the same weights and batches, ready to time."""

    steps: Dict[str, Callable]  # side -> step(inputs, labels)
    optimizers: Dict[str, List[torch.optim.Optimizer]]  # side -> what HostSyncCounter leaves out
    batches: list
    device: torch.device
    params: int
    flops: float


def setup(args):
    """(device, HF config, random-init encoder) of --model, seeded, with --threads applied."""
    from transformers import AutoModel

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = build_config(args.model)
    return device, config, AutoModel.from_config(config)


def time_block(sides: Sides, side: str, n: int) -> float:
    """Seconds for n steps of one side, the device drained before and after."""
    step = sides.steps[side]
    sync = torch.cuda.synchronize if sides.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for i in range(n):
        step(*sides.batches[i % len(sides.batches)])
    sync()
    return time.perf_counter() - start


def where(device: torch.device, load: float) -> str:
    """The machine a benchmark ran on, as its header says it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu, {torch.get_num_threads()} threads, load avg {load:.1f} on {os.cpu_count()} cores"
