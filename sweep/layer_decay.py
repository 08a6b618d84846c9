"""Layer-wise learning-rate decay (optim.layer_decay; Sun et al. 2019, ELECTRA, BEiT): the top
encoder layer trains at optim.lr times the decay, each layer below at the one above's rate times
the decay, the embeddings lowest; the pooling and the head at optim.lr.

The layers are the encoder's numbered layer list, found by its length (config.num_hidden_layers):
BERT's and MiniLM's `encoder.layer.N`, ModernBERT's `layers.N`, and any other family that keeps its
blocks in one list."""

from typing import Dict, Tuple

from torch import nn

from sweep.errors import InputError


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
