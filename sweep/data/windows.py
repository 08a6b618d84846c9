"""data.truncation=chunks: a whole text as windows of max_len tokens, each with the tokenizer's special
tokens, consecutive windows sharing `stride` tokens (the fast tokenizer's own overflow: what
transformers' question-answering examples cut long contexts with). A text keeps its first
`max_chunks` windows; a longer text's rest is cut (and counted: sweep/data/lengths.py).

A tokenized row holds one list per window (input_ids: [[101, ...], [101, ...]]); the collator
flattens a batch's windows and says how many each text has (sweep/data/loaders.py), and the
classifier pools each text's windows into one vector (sweep/model/classifier.py). Training,
evaluation and predict.py cut through this one function."""

from typing import Dict, List


def window_budget(max_len: int, special_tokens: int, stride: int) -> int:
    """Text tokens a window adds beyond the one before: its content less the overlap."""
    return max_len - special_tokens - stride


def tokens_read(max_len: int, special_tokens: int, stride: int, max_chunks: int) -> int:
    """The text tokens (special tokens not counted) that max_chunks windows cover."""
    return max_len - special_tokens + (max_chunks - 1) * window_budget(max_len, special_tokens, stride)


def cut_windows(tokenizer, texts: List[str], max_len: int, stride: int, max_chunks: int) -> Dict[str, list]:
    """Per text, its windows' input_ids, token_type_ids and attention_mask (lists of lists), the
    first max_chunks of them. `tokenizer`: a transformers fast tokenizer."""
    encoded = tokenizer(
        texts, truncation=True, max_length=max_len, stride=stride, return_overflowing_tokens=True, padding=False
    )
    names = [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in encoded]
    out: Dict[str, list] = {name: [[] for _ in texts] for name in names}
    for window, text in enumerate(encoded["overflow_to_sample_mapping"]):
        if len(out["input_ids"][text]) < max_chunks:
            for name in names:
                out[name][text].append(encoded[name][window])
    return out
