"""Sentence vectors from token states. Every pooler takes the attention mask, so padding never
changes the result."""

from typing import Callable, Dict

import torch

from sweep.errors import InputError

Pooler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's state: [CLS] for BERT, its counterpart for ModernBERT."""
    return hidden[:, 0]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average over the real tokens only."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    total = (hidden * weights).sum(dim=1)
    return total / weights.sum(dim=1).clamp(min=1.0)


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise max over the real tokens only."""
    padding = ~mask.bool().unsqueeze(-1)
    return hidden.masked_fill(padding, torch.finfo(hidden.dtype).min).max(dim=1).values


POOLERS: Dict[str, Pooler] = {"cls": cls_pool, "mean": mean_pool, "max": max_pool}


def get_pooler(name: str) -> Pooler:
    if name not in POOLERS:
        raise InputError(f"pooling.name={name!r} is not a pooling; use one of {sorted(POOLERS)}")
    return POOLERS[name]
