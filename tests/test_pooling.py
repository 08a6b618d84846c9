"""Pooling: padding never changes a mean/max-pooled vector; cls picks position 0."""
import pytest
import torch

from sweep.errors import InputError
from sweep.pooling import cls_pool, get_pooler, max_pool, mean_pool


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


def test_unknown_pooling_names_the_options():
    with pytest.raises(InputError, match=r"pooling.name='attn'.*\['cls', 'max', 'mean'\]"):
        get_pooler("attn")
