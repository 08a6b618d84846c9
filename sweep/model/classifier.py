"""Classifier = encoder (AutoModel) + pooling + linear head, saved and loaded as one directory.

Importable with torch and transformers alone (no hydra, datasets or wandb), so the benchmark runs
on machines that have only those."""

import contextlib
import copy
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from sweep.errors import ModelLoadError
from sweep.model.pooling import WIDTH as POOLED_WIDTH
from sweep.model.pooling import WindowPool, make_pooling
from sweep.rundir import ADAPTER_DIR, CLASSIFIER_FILE, HEAD_FILE

try:  # transformers >= 5: one mask builder per attention kind, with a switch for the no-padding shortcut
    from transformers import BertModel, ModernBertModel
    from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

    _MASK_BUILDERS: Dict[str, Callable] = {
        "full_attention": create_bidirectional_mask,
        "sliding_attention": create_bidirectional_sliding_window_mask,
    }
    if not all(
        "allow_is_bidirectional_skip" in inspect.signature(build).parameters for build in _MASK_BUILDERS.values()
    ):
        _MASK_BUILDERS = {}
except ImportError:
    _MASK_BUILDERS = {}


def resolve_source(model_id: str, offline_package: Optional[str] = None, bundled_id: Optional[str] = None) -> str:
    """Where to load from: model.id as given (a hub id or a directory). The copy bundled in an
    installed `offline_package` stands in only for the hub id that package bundles (`bundled_id`),
    and only when that id is in no local dir and not in the hub cache: any other model.id wins."""
    if not offline_package or model_id != bundled_id or Path(model_id).is_dir() or _in_hub_cache(model_id):
        return model_id
    try:
        package = importlib.import_module(offline_package)
    except ImportError:
        return model_id
    bundled = Path(package.get_model_path())
    return str(bundled) if (bundled / "config.json").is_file() else model_id


def _in_hub_cache(model_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model_id, "config.json"), str)


def _open(loader, source: str, what: str):
    try:
        return loader(source)
    except (OSError, ValueError) as error:
        if Path(source).is_dir():
            raise ModelLoadError(f"model.id={source!r} is a directory but holds no loadable {what}: {error}") from None
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        raise ModelLoadError(
            f"cannot load the {what} of model.id={source!r} from the Hugging Face hub "
            f"({'HF_HUB_OFFLINE=1 and it is not in the local cache' if offline else 'hub unreachable and not in the local cache'}); "
            f"point model.id at a local directory with a saved checkpoint (save_pretrained), "
            f"or use model.tiny=true for a random-init model of the same family"
        ) from None


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    return _open(AutoTokenizer.from_pretrained, source, "tokenizer")


def load_config(source: str) -> PretrainedConfig:
    return _open(AutoConfig.from_pretrained, source, "config")


def load_encoder(source: str) -> PreTrainedModel:
    """In fp32 whatever dtype the checkpoint was saved in (transformers 5 keeps a bf16 checkpoint in
    bf16): training needs fp32 master weights, or Adam's small updates round away; autocast
    chooses the compute dtype."""
    return _open(AutoModel.from_pretrained, source, "weights").float()


# tokenizers that set no limit report this huge model_max_length (transformers' VERY_LARGE_INTEGER)
NO_TOKENIZER_LIMIT = 10**9


def max_positions(config: PretrainedConfig, tokenizer: Optional[PreTrainedTokenizerBase] = None) -> Optional[int]:
    """The longest input the model takes: the smaller of its position table and its tokenizer's
    model_max_length. Both count: RoBERTa's table has 514 rows but positions start after the
    padding id, so only its tokenizer's 512 is safe. None when neither says (relative positions)."""
    limits = [getattr(config, "max_position_embeddings", None)]
    if tokenizer is not None:
        limits.append(tokenizer.model_max_length)
    known = [int(limit) for limit in limits if limit is not None and limit < NO_TOKENIZER_LIMIT]
    return min(known) if known else None


def checkpoint_activations(encoder: PreTrainedModel, model_name: str) -> None:
    """trainer.gradient_checkpointing: the encoder recomputes each layer's activations in the backward
    pass (transformers' own switch; non-reentrant, the form that works under LoRA and torch.compile)."""
    if not encoder.supports_gradient_checkpointing:
        raise ModelLoadError(
            f"trainer.gradient_checkpointing=true: model {model_name!r} ({encoder.config.model_type}) does not "
            f"support it in transformers; use trainer.gradient_checkpointing=false"
        )
    encoder.config.use_cache = False  # an encoder caches nothing; said here, transformers does not warn about it
    enable = getattr(encoder, "activation_checkpointing_enable", None)  # its name since transformers 5.2x
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def require_padding(tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Batches are padded: a tokenizer without a padding token cannot make them."""
    if tokenizer.pad_token_id is None:
        raise ModelLoadError(
            f"the tokenizer of model.id={source!r} has no padding token; use an encoder whose tokenizer "
            f"defines pad_token (BERT, RoBERTa, DeBERTa, E5 and ModernBERT do)"
        )


def encoder_input_names(encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> List[str]:
    """The tokenizer outputs the encoder really takes: BERT uses token_type_ids, ModernBERT has none
    (and would swallow them silently through **kwargs), so only named forward parameters count."""
    accepted = inspect.signature(encoder.forward).parameters
    return [name for name in tokenizer.model_input_names if name in accepted]


EncoderMask = Union[torch.Tensor, Dict[str, torch.Tensor]]
# the implementations whose masks are plain tensors built by the builders above (flash attention takes
# the 2D mask itself, flex a BlockMask): the others get the 2D mask and build their own
PREBUILT_MASK_ATTENTION = ("sdpa", "eager")


def encoder_attention_mask(encoder: PreTrainedModel, attention_mask: torch.Tensor) -> EncoderMask:
    """The mask to give the encoder: the 4D mask(s) it would build from the 2D 0/1 `attention_mask`,
    built here by the same transformers functions with the no-padding shortcut turned off.

    Why: for sdpa and eager attention, transformers checks `padding_mask.all()` on the host before
    building the mask (to drop it when nothing is padded), which waits for the device on every
    eager forward. A 4D mask (or ModernBERT's dict of them) is used as given, so that check never
    runs. This is the mask a torch.compile'd forward builds anyway (the check is skipped while
    tracing), and the same mask an eager forward builds whenever a batch has padding; only an
    unpadded batch now gets an all-true mask instead of none (same values; sdpa may pick another
    kernel). Padding rows that no key is left for are unmasked (`unmask_empty_rows`), which changes
    no real token's output. Encoders, attention implementations and transformers versions not
    checked here keep the plain 2D mask."""
    config = encoder.config
    if not _MASK_BUILDERS or config._attn_implementation not in PREBUILT_MASK_ATTENTION:
        return attention_mask
    if isinstance(encoder, ModernBertModel):  # its forward takes {layer type: mask}, as it builds them itself
        layer_types = set(config.layer_types)
    elif isinstance(encoder, BertModel) and not config.is_decoder:  # bidirectional self-attention only
        layer_types = None
    else:
        return attention_mask
    batch, length = attention_mask.shape
    # the builders read only the shape, dtype and device of the embeddings: an empty stand-in. The dtype
    # sets eager's "masked" value: the embeddings output the parameters' dtype (fp32 in this project,
    # autocast or not, as they end in a LayerNorm)
    embeddings = attention_mask.new_empty((batch, length, 0), dtype=encoder.get_input_embeddings().weight.dtype)

    def build(layer_type: str) -> torch.Tensor:
        mask = _MASK_BUILDERS[layer_type](
            config=config, inputs_embeds=embeddings, attention_mask=attention_mask, allow_is_bidirectional_skip=False
        )
        return unmask_empty_rows(mask)

    if layer_types is None:
        return build("full_attention")
    if not layer_types <= _MASK_BUILDERS.keys():
        return attention_mask
    return {layer_type: build(layer_type) for layer_type in layer_types}


def unmask_empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """Lets a query row with no key left (a padding position beyond a sliding window's reach from
    the last real token) attend to every key. torch's CUDA kernels turn such a boolean row into
    0/0 = NaN, which spreads to every token through the next layer; the row's own output is never
    read (padding), and no other row changes. transformers did this itself before version 5."""
    if mask.dtype != torch.bool:  # eager's additive masks use a finite minimum: no NaN
        return mask
    return mask | ~mask.any(dim=-1, keepdim=True)


class Classifier(nn.Module):
    """encoder -> pooled sentence vector -> dropout -> linear head; the same head for every encoder.
    layers > 1 pools the average of the last `layers` layers' token states (pooling.layers).
    windows = (window pooling, max windows per text): the rows are windows of texts (data.truncation=
    chunks), each pooled as above, then each text's windows pooled into the text's vector."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        pooling: str,
        num_labels: int = 2,
        head_dropout: float = 0.1,
        layers: int = 1,
        frozen_encoder: bool = False,
        windows: Optional[Tuple[str, int]] = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.pooling, self.layers, self.frozen_encoder = pooling, layers, frozen_encoder
        width = encoder.config.hidden_size
        self.pool = make_pooling(pooling, width)
        pooled_width = width * POOLED_WIDTH.get(pooling, 1)
        self.window_pool = WindowPool(windows[0], pooled_width, windows[1]) if windows else None
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(pooled_width, num_labels)
        object.__setattr__(self, "adapter", None)  # a LoRA wrapper of the encoder; not a submodule (no double weights)

    def attach_adapter(self, adapter) -> None:
        """The peft model that wraps self.encoder (injected in place): best/ saves it merged and alone."""
        object.__setattr__(self, "adapter", adapter)

    def merge_adapter(self) -> None:
        """Folds the adapters into the encoder's weights for good: the plain model, at its inference cost."""
        if self.adapter is not None:
            self.encoder = self.adapter.merge_and_unload()
            object.__setattr__(self, "adapter", None)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.frozen_encoder:  # a probe reads the encoder as inference does: no dropout inside it
            self.encoder.eval()
        return self

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **encoder_inputs) -> torch.Tensor:
        """What the pooling reads: the last layer's token states, or the mean of the last `layers`."""
        encoder_mask = encoder_attention_mask(self.encoder, attention_mask)  # prebuilt: no host sync per forward
        if self.layers > 1:
            encoder_inputs["output_hidden_states"] = True
        with torch.no_grad() if self.frozen_encoder else contextlib.nullcontext():  # nothing to backpropagate into
            out = self.encoder(input_ids=input_ids, attention_mask=encoder_mask, **encoder_inputs)
        hidden = out.last_hidden_state
        if self.layers > 1:  # the last layer as the encoder outputs it (ModernBERT's after its final norm)
            hidden = torch.stack([*out.hidden_states[-self.layers : -1], hidden]).mean(dim=0)
        return hidden

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        windows: Optional[torch.Tensor] = None,
        **encoder_inputs,
    ) -> torch.Tensor:
        """windows: how many of the rows (windows) each text has, text by text (data.truncation=chunks)."""
        hidden = self.token_states(input_ids, attention_mask, **encoder_inputs)
        return self.classify(self.pool(hidden, attention_mask), windows)

    def classify(self, pooled: torch.Tensor, windows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Pooled vectors (of windows, pooled per text first) -> the head's outputs."""
        if windows is not None:
            pooled = self.window_pool(pooled, windows)
        return self.head(self.dropout(pooled))

    def window_meta(self) -> Dict[str, object]:
        return {"window_pooling": self.window_pool.name, "max_chunks": self.window_pool.max_windows}

    @property
    def num_labels(self) -> int:
        return self.head.out_features

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_pretrained(self, directory, tokenizer: Optional[PreTrainedTokenizerBase] = None, **meta) -> None:
        """Encoder via save_pretrained (safetensors), head weights, tokenizer and a small JSON. With
        LoRA adapters the encoder is saved with them merged (a plain checkpoint, loadable without
        peft) and the adapters alone in adapter/ (peft's format); training goes on unmerged."""
        directory = Path(directory)
        if self.adapter is None:
            self.encoder.save_pretrained(directory)
        else:
            copy.deepcopy(self.adapter).merge_and_unload().save_pretrained(directory)
            self.adapter.save_pretrained(directory / ADAPTER_DIR)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        trained_with_head = {"head": self.head, "pool": self.pool}  # a learned pooling's parameters too
        if self.window_pool is not None:
            trained_with_head["window_pool"] = self.window_pool
        head = {
            f"{part}.{k}": v.detach().cpu().contiguous()
            for part, module in trained_with_head.items()
            for k, v in module.state_dict().items()
        }
        save_file(head, directory / HEAD_FILE)
        info = {
            "family": self.encoder.config.model_type,
            "pooling": self.pooling,
            "pooling_layers": self.layers,
            "num_labels": self.num_labels,
            "head_dropout": self.dropout.p,
            **(self.window_meta() if self.window_pool is not None else {}),
            **meta,
        }
        (directory / CLASSIFIER_FILE).write_text(json.dumps(info, indent=2))

    @classmethod
    def from_pretrained(cls, directory) -> "Classifier":
        directory = Path(directory)
        if not (directory / CLASSIFIER_FILE).is_file():
            raise ModelLoadError(
                f"{str(directory)!r} is not a saved Classifier (no {CLASSIFIER_FILE}); pass a run's best/ dir"
            )
        info = json.loads((directory / CLASSIFIER_FILE).read_text())
        layers = info.get("pooling_layers", 1)  # checkpoints from before pooling.layers pooled the last layer
        windows = (info["window_pooling"], info["max_chunks"]) if "window_pooling" in info else None
        model = cls(
            load_encoder(str(directory)),
            info["pooling"],
            info["num_labels"],
            info["head_dropout"],
            layers,
            windows=windows,
        )
        saved = load_file(directory / HEAD_FILE)
        for part, module in (("head", model.head), ("pool", model.pool), ("window_pool", model.window_pool)):
            if module is None:
                continue
            module.load_state_dict(
                {k.removeprefix(f"{part}."): v for k, v in saved.items() if k.startswith(f"{part}.")}
            )
        return model.eval()
