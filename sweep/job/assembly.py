"""Everything a job needs before its first training step, and everything that can fail on bad input
(the model's identity, max_len against the model, the data, the tokenizer): a mistake is reported
in seconds, not after an epoch."""

from typing import Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModel, set_seed

from sweep.config.metrics import metric_problem
from sweep.config.rules import problems
from sweep.config.schema import Config
from sweep.data.lengths import reading, token_lengths
from sweep.data.loaders import Collator, tokenize
from sweep.data.sources import prepare_splits
from sweep.errors import ConfigError, DataError, InputError
from sweep.fit.trainer import Prepared, train_label_names
from sweep.model.classifier import (
    checkpoint_activations,
    encoder_input_names,
    load_config,
    load_encoder,
    load_tokenizer,
    max_positions,
    require_padding,
    resolve_source,
)
from sweep.model.regimes import build_classifier
from sweep.model.tasks import make_task
from sweep.model.tiny import tiny_config, train_tokenizer


def regression_target(train) -> Tuple[float, float]:
    """The train split's mean and std of the target (the head learns it standardized)."""
    values = np.asarray(train["label"][:], dtype=np.float64)
    mean, std = float(values.mean()), float(values.std())
    if not std > 0:
        raise DataError(f"every train label is {mean:g}: a regression needs targets that vary")
    return mean, std


def prepare(cfg: DictConfig, device: torch.device) -> Prepared:
    mcfg, dcfg = cfg.model, cfg.data
    if mcfg.tiny:
        limit = int(mcfg.tiny_config.get("max_position_embeddings", 512))
    else:
        source = resolve_source(mcfg.id, mcfg.offline_package, mcfg.offline_id)
        tokenizer = load_tokenizer(source)
        require_padding(tokenizer, source)
        limit = max_positions(load_config(source), tokenizer)
    check_max_len(dcfg.max_len, limit, mcfg.name)
    splits = prepare_splits(dcfg)
    set_seed(cfg.seed)
    if mcfg.tiny:
        train = splits["train"]
        texts = train["text"][:] + (train["text_pair"][:] if "text_pair" in train.column_names else [])
        tokenizer = train_tokenizer(texts, mcfg.family, int(mcfg.tiny_config.vocab_size))
        encoder = AutoModel.from_config(tiny_config(mcfg.family, tokenizer, OmegaConf.to_container(mcfg.tiny_config)))
    else:
        encoder = load_encoder(source)
    # from the data: 2 for imdb, 4 for ag_news, ...; a logit per label (multi_label); one number (regression)
    num_labels = len(train_label_names(splits["train"])) or 1
    target = regression_target(splits["train"]) if dcfg.task == "regression" else None
    task = make_task(dcfg.task, cfg.trainer.threshold, target)
    check_layers(cfg.pooling.layers, encoder.config.num_hidden_layers, mcfg.name)
    if cfg.trainer.gradient_checkpointing:
        checkpoint_activations(encoder, mcfg.name)
    chunked = dcfg.truncation == "chunks"
    windows = (cfg.pooling.windows, dcfg.max_chunks) if chunked else None
    model = build_classifier(encoder, cfg.method, cfg.pooling, num_labels, cfg.trainer.head_dropout, windows)
    model = model.to(device)
    input_names = encoder_input_names(encoder, tokenizer)
    collator = Collator(input_names, tokenizer.pad_token_id, dcfg.max_len, dcfg.padding, dcfg.task, num_labels, chunked)
    chunks = (dcfg.max_chunks, dcfg.chunk_stride) if chunked else None
    lengths = token_lengths(splits, tokenizer, reading(tokenizer, dcfg))
    tokenized = tokenize(splits, tokenizer, dcfg.max_len, input_names, dcfg.truncation, chunks)
    return Prepared(model, tokenizer, tokenized, collator, task, lengths)


def check_max_len(max_len: int, limit: Optional[int], model_name: str) -> None:
    """limit: the model's longest input, None where the model sets none (relative positions)."""
    if max_len < 8 or (limit is not None and max_len > limit):
        accepted = f"8 <= data.max_len <= {limit}" if limit is not None else "data.max_len >= 8"
        raise DataError(f"data.max_len={max_len} does not fit model {model_name!r}: use {accepted}")


def check_layers(layers: int, model_layers: int, model_name: str) -> None:
    if layers > model_layers:
        raise InputError(
            f"pooling.layers={layers}: model {model_name!r} has {model_layers} layers; use 1 to {model_layers}"
        )


def check_config(cfg: DictConfig) -> None:
    """Every knob against its rule in the schema, all refusals in one line, before anything loads."""
    refused = problems(Config, OmegaConf.to_container(cfg, resolve=True))
    if cfg.model.tiny and cfg.model.family is None:
        refused.append("model.tiny=true needs model.family: bert or modernbert (the tiny builds there are)")
    if cfg.data.text_pair_column and cfg.data.truncation != "head":
        refused.append(
            f"data.truncation={cfg.data.truncation} is for single texts; sentence pairs are cut by the "
            "tokenizer's pair truncation (longest first): use data.truncation=head"
        )
    refused += chunk_problems(cfg)
    task, metric_refused = cfg.data.task, metric_problem(cfg.data.task, cfg.trainer.select_metric)
    if metric_refused:
        refused.append(metric_refused)
    if cfg.trainer.compile == "reduce-overhead" and cfg.trainer.grad_accum_steps > 1:
        refused.append(
            "trainer.grad_accum_steps>1 with trainer.compile=reduce-overhead: each micro-batch's CUDA-graph replay "
            "overwrites the gradients the last one left; use trainer.compile=true or grad_accum_steps=1"
        )
    if task != "single_label" and cfg.optim.class_weights != "none":
        refused.append(f"optim.class_weights={cfg.optim.class_weights} weighs classes: data.task=single_label only")
    if task != "single_label" and cfg.data.name in ("imdb", "synthetic"):
        refused.append(f"data.task={task}: data={cfg.data.name} is single-label; use data=text with your labels")
    if refused:
        raise ConfigError("; ".join(refused))


def chunk_problems(cfg: DictConfig) -> list:
    """data.truncation=chunks against the knobs it meets."""
    data, compile_setting = cfg.data, str(cfg.trainer.compile).lower()
    if data.truncation != "chunks":
        return []
    refused = []
    if data.chunk_stride * 2 >= data.max_len:
        refused.append(
            f"data.chunk_stride={data.chunk_stride}: windows of data.max_len={data.max_len} tokens must overlap "
            f"by less than half a window; use 0 <= data.chunk_stride < {(data.max_len + 1) // 2}"
        )
    if compile_setting in ("true", "reduce-overhead"):
        refused.append(
            f"trainer.compile={compile_setting} with data.truncation=chunks: each batch holds another number of "
            "windows, a new shape to compile every time; use trainer.compile=false (or auto, which runs eagerly)"
        )
    return refused


def require_model_identity(model_cfg: DictConfig) -> None:
    """model=hf leaves model.id (what to load) and model.name (what names the run's cells in the
    table, run dirs and wandb) to the user."""
    needed = [("name", "roberta")] + ([] if model_cfg.tiny else [("id", "FacebookAI/roberta-base or a local dir")])
    for key, example in needed:
        if OmegaConf.is_missing(model_cfg, key):
            raise InputError(f"model.{key} is not set: add model.{key}=... (e.g. {example}) to the command")
