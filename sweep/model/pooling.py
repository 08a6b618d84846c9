"""Sentence vectors from token states. Every pooler takes the attention mask, so padding never
changes the result. cls, mean, max and cls_mean have no parameters; attention learns a query, saved
with the head."""

import math
from typing import Callable, Dict

import torch
from torch import nn

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


def cls_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's state and the masked mean side by side (twice the width)."""
    return torch.cat([POOLERS[part](hidden, mask) for part in SIDE_BY_SIDE["cls_mean"]], dim=-1)


class AttentionPool(nn.Module):
    """A learned query attends over the real tokens: softmax(states . query / sqrt(width)) weights
    the states. The query starts at zero, where every real token weighs the same (the masked mean)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (hidden @ self.query.to(hidden.dtype)) / math.sqrt(hidden.shape[-1])
        scores = scores.float().masked_fill(~mask.bool(), torch.finfo(torch.float32).min)
        weights = scores.softmax(dim=-1).to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1)


class Parameterless(nn.Module):
    """A pooler without parameters as a module, so that every pooling sits in the model alike."""

    def __init__(self, pool: Pooler):
        super().__init__()
        self.pool = pool

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pool(hidden, mask)


POOLERS: Dict[str, Pooler] = {"cls": cls_pool, "mean": mean_pool, "max": max_pool, "cls_mean": cls_mean_pool}
# what one pass of a frozen encoder yields for sweep/fit/frozen_features.py's cache
# (cls_mean is cls and mean side by side)
ENCODED = ("cls", "mean", "max")
LEARNED = {"attention": AttentionPool}  # poolings with parameters, trained with the head
SIDE_BY_SIDE = {"cls_mean": ("cls", "mean")}  # poolings that are others concatenated, in this order
WIDTH = {"cls_mean": 2}  # the pooled vector's width in token-state widths (1 where not named)


def make_pooling(name: str, hidden_size: int) -> nn.Module:
    """The pooling as a module of the model; its pooled width is WIDTH.get(name, 1) * hidden_size."""
    if name in LEARNED:
        return LEARNED[name](hidden_size)
    return Parameterless(POOLERS[name])  # a name outside these was refused with the config (sweep/config/schema.py)


class WindowPool(nn.Module):
    """data.truncation=chunks: the vectors of a text's windows (rows of one tensor, text by text,
    `counts` windows each) -> one vector per text, by mean, max or a learned attention over the
    text's windows (the token poolers, applied to windows instead of tokens). The windows are laid
    out as (texts, max_windows, width) with a mask of the real ones: no wait for the device."""

    def __init__(self, name: str, width: int, max_windows: int):
        super().__init__()
        self.name, self.max_windows = name, max_windows
        self.pool = make_pooling(name, width)

    def forward(self, vectors: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        texts = counts.shape[0]
        text = torch.repeat_interleave(torch.arange(texts, device=counts.device), counts, output_size=vectors.shape[0])
        first = torch.cumsum(counts, 0) - counts  # each text's first row
        position = torch.arange(vectors.shape[0], device=counts.device) - first[text]
        laid_out = vectors.new_zeros((texts, self.max_windows, vectors.shape[-1]))
        laid_out[text, position] = vectors
        mask = torch.arange(self.max_windows, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
        return self.pool(laid_out, mask.long())
