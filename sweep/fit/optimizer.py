"""The optimizer and its schedule: Adam or AdamW with no decay on biases and norms, each parameter
group at its learning rate under optim.layer_decay (Sun et al. 2019, ELECTRA, BEiT: the top layer at
optim.lr x D, each layer below at the one above's rate x D, the embeddings lowest), and a transformers
schedule by name."""

import math
from typing import Dict, Tuple

import torch
from torch import nn
from transformers import get_scheduler

from sweep.errors import InputError


def build_optimizer(model: nn.Module, optim_cfg, total_steps: int):
    """Adam/AdamW with no decay on biases and norms, each layer at its rate under
    optim.layer_decay (sweep/fit/optimizer.py); a transformers schedule by name."""
    layer_decay = optim_cfg.layer_decay
    trains_encoder = hasattr(model, "encoder") and any(p.requires_grad for p in model.encoder.parameters())
    scales = layer_scales(model, layer_decay) if layer_decay != 1.0 and trains_encoder else {}
    grouped: Dict[tuple, list] = {}  # (decays, lr scale) -> parameters, in the model's order
    for name, param in model.named_parameters():
        if param.requires_grad:
            grouped.setdefault((param.ndim >= 2, scales.get(name, 1.0)), []).append(param)
    for decays in (True, False):  # the two groups of an optimizer without layer decay, even when empty
        grouped.setdefault((decays, 1.0), [])
    groups = [
        {"params": params, "weight_decay": optim_cfg.weight_decay if decays else 0.0, "lr": optim_cfg.lr * scale}
        for (decays, scale), params in sorted(grouped.items(), key=lambda item: (not item[0][0], -item[0][1]))
    ]
    kind = torch.optim.AdamW if optim_cfg.name.startswith("adamw") else torch.optim.Adam
    device_type = next(model.parameters()).device.type
    # fused kernels on GPU, foreach (multi-tensor) elsewhere: one launch for all params
    impl = {"fused": True} if device_type == "cuda" else {"foreach": True}
    optimizer = kind(groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps, **impl)
    warmup = int(math.ceil(optim_cfg.warmup_ratio * total_steps))
    scheduler = get_scheduler(optim_cfg.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def layer_list(encoder: nn.Module) -> str:
    """The dotted name of the encoder's list of its num_hidden_layers blocks."""
    count = encoder.config.num_hidden_layers
    lists = [
        name for name, module in encoder.named_modules() if isinstance(module, nn.ModuleList) and len(module) == count
    ]
    if len(lists) != 1:
        raise InputError(
            f"optim.layer_decay: model_type {encoder.config.model_type!r} keeps its {count} layers in "
            f"{'no single list' if not lists else 'several lists: ' + ', '.join(lists)}; use optim.layer_decay=1.0"
        )
    return lists[0]


def parameter_depths(model: nn.Module) -> Tuple[Dict[str, int], int]:
    """({parameter name: depth}, top depth) for a Classifier: embeddings 0, layer N at N + 1, what
    follows the last layer (ModernBERT's final norm, BERT's pooler) with it, pooling and head above."""
    encoder = model.encoder
    blocks, count = f"encoder.{layer_list(encoder)}.", encoder.config.num_hidden_layers
    depths = {}
    for name, _ in model.named_parameters():
        if name.startswith(blocks):
            depths[name] = int(name[len(blocks) :].split(".", 1)[0]) + 1
        elif name.startswith("encoder."):
            depths[name] = 0 if "embed" in name else count
        else:
            depths[name] = count + 1
    return depths, count + 1


def layer_scales(model: nn.Module, decay: float) -> Dict[str, float]:
    """{parameter name: its learning rate as a fraction of optim.lr}."""
    depths, top = parameter_depths(model)
    return {name: decay ** (top - depth) for name, depth in depths.items()}
