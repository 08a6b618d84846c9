"""Rows -> batches: tokenizing (cached by datasets, keyed by the tokenizer's fingerprint), the
collator (dynamic or max_length padding) and the loaders (seeded shuffles, length grouping, resume
mid-epoch)."""

import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from sweep.data.truncation import keep_tokens
from sweep.data.windows import cut_windows

# DataError lives beside the text loader, which raises it too

# ---------------------------------------------------------------- tokenization


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides the token ids: the tokenizer's full definition, less the truncation and padding
    state that each call leaves behind (max_len is part of the key on its own)."""
    definition = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    definition.no_truncation()
    definition.no_padding()
    return hashlib.sha256(definition.to_str().encode()).hexdigest()[:16]


CHARS_PER_TOKEN_BOUND = 8  # a max_len-token prefix of English prose is far shorter than max_len * 8 chars


def encode_truncated(tokenizer, texts: List[str], max_len: int) -> Dict[str, list]:
    """tokenizer(texts, truncation=True, max_length=max_len), without tokenizing the part of a long
    review that truncation throws away (IMDB reviews average 1,300 chars; max_len 128 keeps ~600).
    Texts are cut at a space, where the word-level pre-tokenizers of BERT and ModernBERT split
    anyway, so the kept tokens are identical; a cut text that no longer fills max_len is redone whole."""
    limit = max_len * CHARS_PER_TOKEN_BOUND
    cut = [t if len(t) <= limit or t.rfind(" ", 0, limit) <= 0 else t[: t.rfind(" ", 0, limit)] for t in texts]
    encoded = tokenizer(cut, truncation=True, max_length=max_len)
    redo = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) < max_len and len(cut[i]) < len(texts[i])]
    if redo:
        again = tokenizer([texts[i] for i in redo], truncation=True, max_length=max_len)
        for key in encoded.keys():
            for j, i in enumerate(redo):
                encoded[key][i] = again[key][j]
    return encoded


def tokenize(
    splits: DatasetDict,
    tokenizer,
    max_len: int,
    input_names: List[str],
    truncation: str = "head",
    chunks: Optional[Tuple[int, int]] = None,
) -> DatasetDict:
    """Truncate to max_len (keeping the head, the tail or both: sweep/data/truncation.py), or cut into
    windows (truncation=chunks, `chunks` = (max_chunks, stride): sweep/data/windows.py); no padding (the
    collator pads). Cached by datasets under a fingerprint of the split, the tokenizer, max_len and
    the truncation, so a second run of the same data does not tokenize again."""
    key = f"{tokenizer_fingerprint(tokenizer)}-{max_len}-{'.'.join(input_names)}"
    if truncation != "head":  # the head's key stays as it was: its cache files still count
        key += f"-{truncation}"
    if truncation == "chunks":
        key += "-{}x{}".format(*chunks)

    def encode(batch):
        if "text_pair" in batch:  # sentence pairs: the tokenizer joins them ([SEP], token_type_ids 1)
            encoded = tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=max_len)
        elif truncation == "head":
            encoded = encode_truncated(tokenizer, batch["text"], max_len)
        elif truncation == "chunks":
            encoded = cut_windows(tokenizer, batch["text"], max_len, chunks[1], chunks[0])
        else:
            encoded = keep_tokens(tokenizer, batch["text"], max_len, truncation)
        return {name: encoded[name] for name in input_names}

    out = {}
    for name, ds in splits.items():
        fingerprint = hashlib.sha256(f"{ds._fingerprint}-{key}".encode()).hexdigest()[:16]
        out[name] = ds.map(
            encode,
            batched=True,
            batch_size=1000,
            remove_columns=[c for c in ("text", "text_pair") if c in ds.column_names],
            new_fingerprint=fingerprint,
            desc=f"tokenize {name}",
        )
    return DatasetDict(out)


# ---------------------------------------------------------------- batches


class Collator:
    """Dict of token-id lists -> padded tensors; pads to max_len (the seed's) or to the batch's longest.
    Labels as data.task holds them (sweep/model/tasks.py): class ids; a 0/1 row over num_labels labels
    (multi_label); the numbers themselves (regression: the task standardizes them for its loss).
    windows=True (data.truncation=chunks): a row holds a list of windows; the batch's windows are its
    rows, text by text, and `windows` says how many each text has."""

    def __init__(
        self,
        input_names: List[str],
        pad_token_id: int,
        max_len: int,
        padding: str,
        task=None,
        num_labels=0,
        windows: bool = False,
    ):
        self.input_names, self.pad_token_id, self.max_len, self.padding = input_names, pad_token_id, max_len, padding
        self.task, self.num_labels, self.windows = task or "single_label", num_labels, windows

    def labels(self, labels: list) -> torch.Tensor:
        if self.task == "multi_label":
            rows = torch.zeros((len(labels), self.num_labels), dtype=torch.float32)
            for row, ids in enumerate(labels):
                rows[row, ids] = 1.0
            return rows
        if self.task == "regression":
            return torch.tensor(labels, dtype=torch.float64)
        return torch.tensor(labels, dtype=torch.long)

    def __call__(self, rows: Dict[str, list]) -> Dict[str, torch.Tensor]:
        batch = self.pad({name: rows[name] for name in self.input_names})
        if self.windows:
            batch["windows"] = torch.tensor([len(windows) for windows in rows["input_ids"]], dtype=torch.long)
        batch["labels"] = self.labels(rows["label"])
        batch["idx"] = torch.tensor(rows["idx"], dtype=torch.long)
        return batch

    def pad(self, inputs: Dict[str, list]) -> Dict[str, torch.Tensor]:
        """The token-id lists (each text's windows one after another, with windows) as padded tensors."""
        if self.windows:
            inputs = {name: [window for text in texts for window in text] for name, texts in inputs.items()}
        sequences = inputs["input_ids"]
        width = self.max_len if self.padding == "max_length" else max(len(s) for s in sequences)
        batch = {}
        for name, lists in inputs.items():
            fill = self.pad_token_id if name == "input_ids" else 0
            tensor = torch.full((len(sequences), width), fill, dtype=torch.long)
            for row, values in enumerate(lists):
                tensor[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            batch[name] = tensor
        if "attention_mask" not in batch:
            batch["attention_mask"] = (batch["input_ids"] != self.pad_token_id).long()
        return batch


def token_counts(rows: list) -> List[int]:
    """Each row's tokens: of its one sequence, or of all its windows (data.truncation=chunks)."""
    return [sum(map(len, ids)) if ids and isinstance(ids[0], list) else len(ids) for ids in rows]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, group: int = 50) -> List[List[int]]:
    """Shuffled batches of similar-length rows (less padding with data.padding=dynamic): shuffle,
    sort within windows of `group` batches by length, cut into batches, shuffle the batches."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * group
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def make_loader(
    ds: Dataset,
    collator: Collator,
    batch_size: int,
    shuffle_seed: Optional[int] = None,
    group_by_length: bool = False,
    num_workers: int = 0,
    pin_memory: bool = False,
    skip_batches: int = 0,
) -> DataLoader:
    """Whole batches are read from arrow in one call (ds[list_of_rows]), not row by row.
    shuffle_seed=None keeps the order; the train loader is rebuilt each epoch with seed + epoch,
    which makes the batch order of any epoch reproducible on resume; skip_batches leaves out its
    first batches (a resume in the middle of the epoch), without reading them."""
    if shuffle_seed is None:
        batches = BatchSampler(SequentialSampler(ds), batch_size, drop_last=False)
    elif group_by_length:
        batches = length_grouped_batches(token_counts(ds["input_ids"][:]), batch_size, shuffle_seed)
    else:
        order = RandomSampler(ds, generator=torch.Generator().manual_seed(shuffle_seed))
        batches = BatchSampler(order, batch_size, drop_last=False)
    if skip_batches:
        batches = list(batches)[skip_batches:]
    return DataLoader(
        ds, sampler=batches, batch_size=None, collate_fn=collator, num_workers=num_workers, pin_memory=pin_memory
    )
