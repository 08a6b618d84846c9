"""Which tokens of a text longer than max_len a run keeps (data.truncation): head (the first; the
tokenizer's own truncation, sweep.data.encode_truncated), tail (the last) or head_tail (a quarter of
the budget from the head, the rest from the end: Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification?", kept 128 + 382 of 512 on IMDB). The budget is max_len less the special tokens.
Training and predict.py cut through the same function. Imports only `tokenizers`."""

from typing import Dict, List

from tokenizers import Encoding

HEAD_SHARE = 0.25  # head_tail: the head's share of the token budget (Sun et al.'s 128 of 510 rounds to it)


def keep_tokens(tokenizer, texts: List[str], max_len: int, truncation: str) -> Dict[str, list]:
    """tail or head_tail: the texts tokenized whole (no special tokens), cut to the budget, then the
    tokenizer's special tokens put around what is kept (its post-processor, as a normal call does)."""
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()  # transformers leaves its last call's truncation and padding on the backend
    backend.no_padding()
    budget = max_len - backend.num_special_tokens_to_add(is_pair=False)
    head = int(budget * HEAD_SHARE) if truncation == "head_tail" else 0
    tails = backend.encode_batch(texts, add_special_tokens=False)
    long = [i for i, kept in enumerate(tails) if len(kept.ids) > budget]
    # head_tail: a second encoding of the long texts only, for their head (truncate cuts in place)
    heads = dict(zip(long, backend.encode_batch([texts[i] for i in long], add_special_tokens=False))) if head else {}
    encoded: Dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    for i, kept in enumerate(tails):
        if len(kept.ids) > budget:
            kept.truncate(budget - head, direction="left")
            if head:
                heads[i].truncate(head)
                kept = Encoding.merge([heads[i], kept], growing_offsets=False)
        final = backend.post_process(kept)
        encoded["input_ids"].append(final.ids)
        encoded["token_type_ids"].append(final.type_ids)
        encoded["attention_mask"].append(final.attention_mask)
    return encoded
