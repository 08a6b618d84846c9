"""Which tokens of a text longer than max_len a run keeps (data.truncation): head (the first; the
tokenizer's own truncation, sweep.data.loaders.encode_truncated), tail (the last) or head_tail (a quarter of
the budget from the head, the rest from the end: Sun et al. 2019, "How to Fine-Tune BERT for Text
Classification?", kept 128 + 382 of 512 on IMDB). The budget is max_len less the special tokens.
Training and predict.py cut through the same function."""

from typing import Dict, List

HEAD_SHARE = 0.25  # head_tail: the head's share of the token budget (Sun et al.'s 128 of 510 rounds to it)


def keep_tokens(tokenizer, texts: List[str], max_len: int, truncation: str) -> Dict[str, list]:
    """tail or head_tail: the texts tokenized whole (no special tokens), cut to the budget, then the
    tokenizer's special tokens put around what is kept (its post-processor, as a normal call does).
    `tokenizer`: a transformers fast tokenizer or the `tokenizers.Tokenizer` behind one (ONNX serving)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    backend.no_truncation()  # transformers leaves its last call's truncation and padding on the backend
    backend.no_padding()
    budget = max_len - backend.num_special_tokens_to_add(is_pair=False)
    head = int(budget * HEAD_SHARE) if truncation == "head_tail" else 0
    encoded: Dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    for whole in backend.encode_batch(texts, add_special_tokens=False):
        ids = whole.ids
        whole.truncate(budget, direction="left")  # the tail: exactly what the tokenizer's left truncation keeps
        final = backend.post_process(whole)
        kept = final.ids
        if head and len(ids) > budget:
            # head_tail: the tail's tokens swapped for the head's and a shorter tail, in place (the same
            # length and special tokens; merging Encodings would combine every overflowing piece of both)
            first = final.special_tokens_mask.index(0)
            kept[first : first + budget] = ids[:head] + ids[len(ids) - (budget - head) :]
        encoded["input_ids"].append(kept)
        encoded["token_type_ids"].append(final.type_ids)
        encoded["attention_mask"].append(final.attention_mask)
    return encoded
