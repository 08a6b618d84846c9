"""The optimizer recipes as composed: Adam for optim=adam (the seed's), AdamW for
optim=adamw_linear, no weight decay on biases and norms, a constant schedule that stays at the
peak lr and a linear one that warms up and decays to 0; and one real run with adamw_linear."""

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModel

from helpers.rundirs import compose_config, metrics
from sweep.data.sources import generate_synthetic
from sweep.fit.optimizer import build_optimizer
from sweep.job.runner import run
from sweep.model.classifier import Classifier
from sweep.model.tiny import tiny_config, train_tokenizer

TOTAL_STEPS = 20


def tiny_classifier(family: str) -> Classifier:
    """The tiny random-init model experiment=smoke builds for this family."""
    cfg = compose_config("experiment=smoke", f"model={family}")
    tokenizer = train_tokenizer(generate_synthetic(200)["text"], family, int(cfg.model.tiny_config.vocab_size))
    encoder = AutoModel.from_config(tiny_config(family, tokenizer, OmegaConf.to_container(cfg.model.tiny_config)))
    return Classifier(encoder, "cls")


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def model(request) -> Classifier:
    return tiny_classifier(request.param)


def optimizer_for(model, optim: str, *overrides: str):
    return build_optimizer(model, compose_config(f"optim={optim}", *overrides).optim, TOTAL_STEPS)


def lrs_over_training(optimizer, scheduler):
    """The lr of every step, as train_step sees it (the scheduler steps after the optimizer)."""
    lrs = []
    for _ in range(TOTAL_STEPS):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs + [scheduler.get_last_lr()[0]]


def test_adam_is_plain_adam_and_adamw_linear_is_adamw(model):
    adam, _ = optimizer_for(model, "adam")
    adamw, _ = optimizer_for(model, "adamw_linear")
    assert type(adam) is torch.optim.Adam  # AdamW subclasses Adam: isinstance would accept either
    assert type(adamw) is torch.optim.AdamW
    assert adamw.param_groups[0]["weight_decay"] == 0.01 and adam.param_groups[0]["weight_decay"] == 0.0


def test_biases_and_norms_never_decay_and_every_weight_matrix_does(model):
    optimizer, _ = optimizer_for(model, "adamw_linear")
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert set(decay_of) == {id(p) for p in named.values()}  # every parameter is trained, once
    for name, param in named.items():
        no_decay = name.endswith("bias") or "norm" in name.lower()
        assert decay_of[id(param)] == (0.0 if no_decay else 0.01), name
    assert any("norm" in name.lower() for name in named)  # the rule was exercised on norms


def test_the_constant_schedule_keeps_the_peak_lr_for_every_step(model):
    lrs = lrs_over_training(*optimizer_for(model, "adam", "optim.lr=1e-3"))
    assert lrs == [1e-3] * (TOTAL_STEPS + 1)


def test_the_linear_schedule_warms_up_then_decays_to_zero(model):
    lrs = lrs_over_training(*optimizer_for(model, "adamw_linear", "optim.lr=1e-3", "optim.warmup_ratio=0.1"))
    warmup = 2  # 10% of 20 steps
    assert lrs[: warmup + 1] == pytest.approx([0.0, 5e-4, 1e-3])
    decay = lrs[warmup:]
    assert all(later < earlier for earlier, later in zip(decay, decay[1:]))
    assert decay[-1] == 0.0


def test_a_run_with_adamw_linear_trains_and_ends_its_schedule_at_zero(tmp_path):
    run_dir = tmp_path / "run"
    run(
        compose_config(
            "experiment=smoke",
            "model=bert",
            "optim=adamw_linear",
            "optim.lr=2e-3",
            "logger=none",
            "data.n_samples=400",
            "trainer.batch_size=28",
            "trainer.epochs=1",
        ),
        run_dir,
    )
    m, history = metrics(run_dir), pd.read_csv(run_dir / "history.csv")
    assert m["status"] == "completed" and m["epochs_run"] == 1, m
    assert history["lr"].iloc[-1] == 0.0  # the linear schedule spans the run's steps exactly


def test_layer_decay_gives_each_layer_the_rate_of_the_one_above_times_the_decay(model):
    optimizer, _ = optimizer_for(model, "adamw_linear", "optim.lr=1e-3", "optim.layer_decay=0.5")
    lr_of = {id(p): group["initial_lr"] for group in optimizer.param_groups for p in group["params"]}  # before warmup
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    named = dict(model.named_parameters())
    assert set(lr_of) == {id(p) for p in named.values()}  # every parameter is trained, once
    blocks = "encoder.encoder.layer." if model.encoder.config.model_type == "bert" else "encoder.layers."
    layers = model.encoder.config.num_hidden_layers  # 2: embeddings 1e-3 / 8, layer 0 / 4, layer 1 / 2
    for name, param in named.items():
        if name.startswith(blocks):
            expected = 1e-3 * 0.5 ** (layers - int(name[len(blocks) :].split(".")[0]))
        elif "embed" in name:
            expected = 1e-3 * 0.5 ** (layers + 1)
        elif name.startswith("encoder."):  # after the last layer (ModernBERT's final norm, BERT's pooler)
            expected = 1e-3 * 0.5
        else:  # pooling and head
            expected = 1e-3
        assert lr_of[id(param)] == pytest.approx(expected), name
        no_decay = name.endswith("bias") or "norm" in name.lower()
        assert decay_of[id(param)] == (0.0 if no_decay else 0.01), name


def test_layer_decay_on_an_encoder_without_one_list_of_layers_says_so():
    from sweep.errors import InputError

    model = tiny_classifier("bert")
    model.encoder.config.num_hidden_layers = 3  # its 2 blocks no longer match: as a family with no such list
    with pytest.raises(InputError, match=r"optim.layer_decay: model_type 'bert' keeps its 3 layers in no single list"):
        optimizer_for(model, "adam", "optim.layer_decay=0.9")
