"""How much of its texts a run reads: per split, the token-length percentiles of the texts with the run's
tokenizer (special tokens included; a pair counts both texts) and the share of texts longer than what
the run reads (data.max_len tokens, or max_chunks windows with data.truncation=chunks). One log line,
metrics.json's data/<split>_* fields, a column of collect's table, and a warning when more than half
of the test texts are cut: a comparison of cells on a fraction of each text says so."""

import hashlib
import logging
from typing import Dict, NamedTuple

import numpy as np
from datasets import DatasetDict

from sweep.data.loaders import tokenizer_fingerprint
from sweep.data.windows import tokens_read

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 99)
CUT_WARNING_SHARE = 0.5  # more than this share of the test texts cut: a warning line


class Reading(NamedTuple):
    """What a run reads of a text: at most `tokens` tokens, special tokens included."""

    tokens: int
    how: str  # for the log line: "max_len 128" or "8 windows of 128"


def reading(tokenizer, data_cfg) -> Reading:
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    max_len = int(data_cfg.max_len)
    if data_cfg.truncation != "chunks":
        return Reading(max_len, f"max_len {max_len}")
    chunks, stride = int(data_cfg.max_chunks), int(data_cfg.chunk_stride)
    covered = tokens_read(max_len, specials, stride, chunks) + specials
    return Reading(covered, f"{chunks} windows of {max_len} (stride {stride})")


def count_tokens(splits: DatasetDict, tokenizer) -> Dict[str, np.ndarray]:
    """Each text's whole length in tokens, per split; cached by datasets (keyed by the split and the
    tokenizer alone, so every max_len and truncation of a sweep reads the same counts)."""
    key = tokenizer_fingerprint(tokenizer)

    def count(batch):
        # verbose=False: a whole text is longer than the model reads; counting it is the point, not a mistake
        encoded = tokenizer(batch["text"], batch.get("text_pair"), verbose=False)
        return {"n_tokens": [len(ids) for ids in encoded["input_ids"]]}

    counts = {}
    for name, ds in splits.items():
        fingerprint = hashlib.sha256(f"{ds._fingerprint}-lengths-{key}".encode()).hexdigest()[:16]
        counted = ds.map(
            count,
            batched=True,
            batch_size=1000,
            remove_columns=ds.column_names,
            new_fingerprint=fingerprint,
            desc=f"count tokens {name}",
        )
        counts[name] = np.asarray(counted["n_tokens"][:], dtype=np.int64)
    return counts


def token_lengths(splits: DatasetDict, tokenizer, read: Reading) -> Dict[str, float]:
    """metrics.json's data/<split>_tokens_p50|p90|p99|max and data/<split>_cut_frac, logged."""
    figures: Dict[str, float] = {}
    shown = []
    for name, counts in count_tokens(splits, tokenizer).items():
        if not len(counts):
            continue
        for q, value in zip(PERCENTILES, np.percentile(counts, PERCENTILES)):
            figures[f"data/{name}_tokens_p{q}"] = float(value)
        figures[f"data/{name}_tokens_max"] = int(counts.max())
        figures[f"data/{name}_cut_frac"] = float((counts > read.tokens).mean())
        quantiles = "/".join(f"{figures[f'data/{name}_tokens_p{q}']:.0f}" for q in PERCENTILES)
        shown.append(f"{name} {quantiles}/{counts.max()} {100 * figures[f'data/{name}_cut_frac']:.1f}%")
    log.info("tokens per text p50/p90/p99/max, share longer than the run reads (%s): %s", read.how, ", ".join(shown))
    cut = figures.get("data/test_cut_frac", 0.0)
    if cut > CUT_WARNING_SHARE:
        log.warning(
            "%.0f%% of the test texts are longer than the run reads (%s): it compares them on their first "
            "part; raise data.max_len, or read them whole with data.truncation=chunks",
            100 * cut,
            read.how,
        )
    return figures
