"""The training regimes (method=finetune|frozen|lora): which of the encoder's weights train.
finetune trains them all; frozen none (the pooling and head train on the encoder's outputs); lora
adds peft's low-rank adapters to the encoder's attention and trains those with the pooling and head.
peft is imported only for lora."""

import warnings
from typing import List, Optional, Sequence, Tuple

from torch import nn
from transformers import PreTrainedModel

from sweep.errors import InputError
from sweep.model.classifier import Classifier

# the modules that get adapters where method.target_modules is null: the attention's query and value
# projections (Hu et al. 2021); ModernBERT fuses query, key and value into one Wqkv (peft has no default)
LORA_TARGETS = {"bert": ["query", "value"], "modernbert": ["Wqkv"]}


def linear_names(encoder: nn.Module) -> List[str]:
    """The distinct names of the encoder's linear layers (what target_modules can name)."""
    return sorted(
        {name.rsplit(".", 1)[-1] for name, module in encoder.named_modules() if isinstance(module, nn.Linear)}
    )


def lora_targets(encoder: PreTrainedModel, configured: Optional[Sequence[str]]) -> List[str]:
    """method.target_modules, else the family's default, else peft's default for the architecture."""
    if configured:
        return list(configured)
    model_type = encoder.config.model_type
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type]
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

    if model_type in PEFT_DEFAULTS:
        return list(PEFT_DEFAULTS[model_type])
    raise InputError(
        f"method=lora: no default adapter targets for model_type {model_type!r}; set method.target_modules "
        f"to its attention projections, e.g. method.target_modules=[...] from its linear layers: "
        f"{', '.join(linear_names(encoder))}"
    )


def add_lora(encoder: PreTrainedModel, method_cfg):
    """peft's LoRA adapters injected into `encoder` in place (its class and forward stay its own);
    every other encoder weight is frozen. Returns the PeftModel that wraps it (merging, saving)."""
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(encoder, method_cfg.target_modules)
    modules = [name for name, _ in encoder.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in modules)]  # peft's matching
    if missing:
        raise InputError(
            f"method.target_modules: {missing} not in model_type {encoder.config.model_type!r}; "
            f"its linear layers are {', '.join(linear_names(encoder))}"
        )
    config = LoraConfig(
        r=int(method_cfg.r),
        lora_alpha=float(method_cfg.alpha),
        lora_dropout=float(method_cfg.dropout),
        target_modules=targets,
    )
    with warnings.catch_warnings():  # peft asks transformers a question it renamed: not the user's to fix
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(encoder, config)


def build_classifier(
    encoder: PreTrainedModel,
    method_cfg,
    pooling_cfg,
    num_labels: int,
    head_dropout: float,
    windows: Optional[Tuple[str, int]] = None,
):
    """The Classifier of the regime: adapters added before the head is made (the seed decides both).
    windows: (window pooling, max windows per text) where the texts come in windows (data.truncation=chunks)."""
    adapter = add_lora(encoder, method_cfg) if method_cfg.name == "lora" else None
    frozen = method_cfg.name == "frozen"
    if frozen:
        encoder.requires_grad_(False)
    model = Classifier(
        encoder, pooling_cfg.name, num_labels, head_dropout, pooling_cfg.layers, frozen_encoder=frozen, windows=windows
    )
    if adapter is not None:
        model.attach_adapter(adapter)
    return model
