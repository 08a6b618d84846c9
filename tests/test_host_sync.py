"""The project's train step never waits for the device (no host sync), and the prebuilt
attention masks that make it so change no number. Runs on a CPU: the counter sees every read of a
tensor's value by the host, the reads that stall a GPU."""

import inspect

import pytest
import torch
from transformers import AutoModel

import sweep.model.classifier
from sweep.benchmarks.harness import SEED_OPTIM, build_config, make_batches
from sweep.benchmarks.host_sync import count_host_syncs
from sweep.benchmarks.steps import BareClassifier
from sweep.fit.optimizer import build_optimizer
from sweep.fit.step import train_step
from sweep.model.classifier import Classifier

FAMILIES = ["bert-tiny", "modernbert-tiny"]


def tiny_classifier(name: str, pooling: str = "mean", attn: str = "sdpa"):
    torch.manual_seed(0)
    config = build_config(name)
    config._attn_implementation = attn
    encoder = AutoModel.from_config(config)
    token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    return Classifier(encoder, pooling), config, token_types


def padded_batch(config, token_types: bool, max_len: int = 64, seed: int = 0):
    ((inputs, labels),) = make_batches(config, 1, 6, max_len, "cpu", token_types, seed=seed)
    assert not inputs["attention_mask"].bool().all()  # real padding: the case the check is for
    return inputs, labels


def unpadded_batch(config, token_types: bool, max_len: int = 64):
    ((inputs, labels),) = make_batches(config, 1, 6, max_len, "cpu", token_types, seed=1)
    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
    return inputs, labels


def describe(counter) -> str:
    return f"{counter.count} host sync(s) in one train step; where:\n" + "\n---\n".join(
        stack[-2500:] for stack in counter.stacks
    )


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_project_train_step_never_reads_device_values(name, attn):
    model, config, token_types = tiny_classifier(name, attn=attn)
    model.train()
    optimizer, scheduler = build_optimizer(model, SEED_OPTIM, total_steps=10)
    inputs, labels = padded_batch(config, token_types)
    counter = count_host_syncs(lambda: train_step(model, inputs, labels, optimizer, scheduler), "cpu", [optimizer])
    assert counter.count == 0, describe(counter)


@pytest.mark.parametrize("name", FAMILIES)
def test_the_counter_sees_the_sync_of_the_plain_2d_mask(name):
    """The reference still calls the encoder with the 2D mask: the counter must see its sync,
    or the test above proves nothing."""
    model, config, token_types = tiny_classifier(name)
    bare = BareClassifier(model.encoder, "mean").train()
    inputs, labels = padded_batch(config, token_types)
    counter = count_host_syncs(lambda: bare(**inputs).sum().backward(), "cpu")
    assert counter.count >= 1 and "padding_mask" in counter.stacks[0], describe(counter)


def logits_and_grads(model, inputs, labels):
    model.zero_grad(set_to_none=True)
    logits = model(**inputs)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    return logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_prebuilt_mask_changes_no_logit_and_no_gradient(name, attn, pooling, monkeypatch):
    """Bit for bit on padded batches (the mask transformers builds itself then); ModernBERT's
    sliding-window layers included (window 64 over 128 tokens)."""
    model, config, token_types = tiny_classifier(name, pooling, attn)
    model.eval()  # no dropout: both calls must see the same network
    batch = padded_batch(config, token_types, max_len=128)
    prebuilt = logits_and_grads(model, *batch)
    monkeypatch.setattr(sweep.model.classifier, "encoder_attention_mask", lambda encoder, mask: mask)  # the old call
    plain = logits_and_grads(model, *batch)
    assert torch.equal(prebuilt[0], plain[0])
    assert prebuilt[1].keys() == plain[1].keys()
    for key in plain[1]:
        assert torch.equal(prebuilt[1][key], plain[1][key]), key


@pytest.mark.parametrize("name", FAMILIES)
def test_unpadded_batch_gets_the_same_logits(name, monkeypatch):
    """Without padding transformers drops the mask; an all-true mask gives the same values."""
    model, config, token_types = tiny_classifier(name)
    model.eval()
    batch = unpadded_batch(config, token_types)
    prebuilt = logits_and_grads(model, *batch)
    monkeypatch.setattr(sweep.model.classifier, "encoder_attention_mask", lambda encoder, mask: mask)
    plain = logits_and_grads(model, *batch)
    torch.testing.assert_close(prebuilt[0], plain[0], rtol=0, atol=1e-6)
    for key in plain[1]:
        torch.testing.assert_close(prebuilt[1][key], plain[1][key], rtol=0, atol=1e-6)


def test_other_attention_implementations_keep_the_2d_mask():
    model, _, _ = tiny_classifier("bert-tiny")
    model.encoder.config._attn_implementation = "flash_attention_2"  # takes the 2D mask itself
    mask = torch.ones(2, 8, dtype=torch.long)
    assert sweep.model.classifier.encoder_attention_mask(model.encoder, mask) is mask


def sdpa_as_the_cuda_memory_efficient_kernel(
    query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_
):
    """What a CPU lacks: torch's CUDA memory-efficient kernel turns a boolean mask into an additive
    one of -inf, so a query row whose keys are all masked is 0/0, NaN (pytorch#103749), and the NaN
    spreads through 0 * NaN in the next layer. torch's CPU kernels return zeros for such rows."""
    scores = query @ key.transpose(-2, -1) * (scale if scale is not None else query.shape[-1] ** -0.5)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.softmax(scores, dim=-1) @ value


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sliding_window_padding_gives_no_nan_on_the_cuda_kernel(pooling, monkeypatch):
    """ModernBERT's local layers see +-window/2 tokens: a padding position further than that from
    the last real token has no key left, a fully masked row. On a GPU that was NaN logits from the
    first step (the smoke grid, bf16 + compile on an H200). Padding rows now attend to every key
    (their outputs are never read), as transformers did before version 5."""
    model, config, token_types = tiny_classifier("modernbert-tiny", pooling)
    model.eval()
    inputs, labels = padded_batch(config, token_types, max_len=128)
    lengths = inputs["attention_mask"].sum(1)
    assert (lengths < 128 - config.local_attention // 2).any()  # rows with no key in their window
    reference = logits_and_grads(model, inputs, labels)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_as_the_cuda_memory_efficient_kernel)
    logits, grads = logits_and_grads(model, inputs, labels)
    assert torch.isfinite(logits).all(), logits
    assert all(torch.isfinite(grad).all() for grad in grads.values())
    torch.testing.assert_close(logits, reference[0], rtol=1e-4, atol=1e-5)  # the same network, another kernel
