"""Data: load -> dedup, split, cap (sweep/splits.py) -> tokenize (cached) -> DataLoaders."""

import hashlib
import logging
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset
from tokenizers import Tokenizer
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from sweep.rundir import LABEL_NAMES
from sweep.splits import cap, drop_duplicates, given_splits, merged, split_dataset

# DataError lives beside the text loader, which raises it too
from sweep.text_data import DataError, drop_unusable, load_text, read_data_file
from sweep.truncation import keep_tokens

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("text", "label")


# ---------------------------------------------------------------- loading


def load_imdb(hub_id: Optional[str], local_dir: Optional[str]) -> Dataset:
    """IMDB's labeled train and test merged into one dataset, from a local dir of parquet files
    (the hub's schema) or from the hub, through the same `datasets` path."""
    if local_dir:
        directory = Path(local_dir).expanduser()
        if not directory.is_dir():
            raise DataError(
                f"data.local_dir={local_dir!r} does not exist; point it at a dir holding train.parquet and test.parquet"
            )
        files = {split: directory / f"{split}.parquet" for split in ("train", "test")}
        missing = [f.name for f in files.values() if not f.is_file()]
        if missing:
            raise DataError(
                f"data.local_dir={local_dir!r} lacks {', '.join(missing)}; it must hold train.parquet and test.parquet (columns text, label)"
            )
        parts = DatasetDict({split: read_data_file(path, split) for split, path in files.items()})
        source = str(directory)
    else:
        try:
            parts = load_dataset(hub_id)
        except Exception as error:  # datasets raises several types for "not reachable / not cached"
            raise DataError(
                f"cannot load data.hub_id={hub_id!r} from the Hugging Face hub ({type(error).__name__}); "
                f"set data.local_dir=DIR with train.parquet and test.parquet (e.g. ../shared/data/imdb)"
            ) from None
        source = hub_id
    for split in ("train", "test"):
        if split not in parts:
            raise DataError(f"{source!r} has no {split!r} split; it needs train and test (found {sorted(parts)})")
        absent = [c for c in REQUIRED_COLUMNS if c not in parts[split].column_names]
        if absent:
            raise DataError(
                f"{source!r} {split} split lacks column(s) {absent}; found {parts[split].column_names}, need text (string) and label (0 = neg, 1 = pos)"
            )
    labelled = {split: parts[split].select_columns(list(REQUIRED_COLUMNS)) for split in ("train", "test")}
    usable = drop_unusable(DatasetDict(labelled))
    return concatenate_datasets(list(usable.values())).cast_column("label", ClassLabel(names=LABEL_NAMES))


# Generated reviews: each holds an odd number of opinion phrases ("the acting was not great"),
# the label is the majority polarity after negation, so no single token decides it.
_POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "charming", "gripping", "delightful"]
_NEGATIVE = ["awful", "boring", "dull", "terrible", "clumsy", "tedious", "bland", "painful"]
_ASPECTS = ["acting", "plot", "script", "music", "ending", "cast", "pacing", "dialogue", "camera work", "story"]
_FILLER = [
    "i saw this film last week .",
    "my friends wanted to watch it .",
    "it runs about two hours .",
    "the cinema was half empty .",
    "it is based on a novel .",
    "we went on a sunday .",
    "",
]
_NEGATORS = ["not", "never", "hardly"]
_NEGATION_RATE = 0.15


def generate_synthetic(n_samples: int, seed: int = 0) -> Dataset:
    """Seeded, learnable sentiment reviews that need more than one token to classify."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n_samples):
        phrases, score = [], 0
        for _ in range(rng.choice([1, 3])):
            positive = rng.random() < 0.5
            adjective = rng.choice(_POSITIVE if positive else _NEGATIVE)
            negated = rng.random() < _NEGATION_RATE
            polarity = (1 if positive else -1) * (-1 if negated else 1)
            score += polarity
            negation = f"{rng.choice(_NEGATORS)} " if negated else ""
            phrases.append(f"the {rng.choice(_ASPECTS)} was {negation}{adjective} .")
        sentences = phrases + [rng.choice(_FILLER)]
        rng.shuffle(sentences)
        texts.append(" ".join(s for s in sentences if s))
        labels.append(int(score > 0))
    ds = Dataset.from_dict({"text": texts, "label": labels})
    return ds.cast_column("label", ClassLabel(names=LABEL_NAMES))


# Generated topic reviews (data.n_classes > 2): the label is the topic of the review's aspects;
# each review also carries opinion phrases of both polarities as distractors.
_TOPICS = {
    "film": ["acting", "plot", "script", "cast", "camera work"],
    "food": ["soup", "dessert", "service", "menu", "wine list"],
    "hotel": ["room", "bed", "lobby", "breakfast", "pool"],
    "phone": ["battery", "screen", "camera app", "charger", "keyboard"],
    "car": ["engine", "brakes", "seats", "gearbox", "headlights"],
    "book": ["prose", "chapters", "cover", "index", "footnotes"],
    "game": ["levels", "controls", "soundtrack", "boss fights", "multiplayer"],
    "flight": ["crew", "legroom", "boarding", "snacks", "landing"],
}
MAX_SYNTHETIC_CLASSES = len(_TOPICS)


def generate_topics(n_samples: int, n_classes: int, seed: int = 0) -> Dataset:
    """Seeded reviews of n_classes topics: two to three aspect phrases of the topic, each with an
    opinion of either polarity, plus filler."""
    topics = list(_TOPICS)[:n_classes]
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n_samples):
        label = rng.randrange(n_classes)
        aspects = rng.sample(_TOPICS[topics[label]], rng.choice([2, 3]))
        sentences = [f"the {a} was {rng.choice(_POSITIVE + _NEGATIVE)} ." for a in aspects] + [rng.choice(_FILLER)]
        rng.shuffle(sentences)
        texts.append(" ".join(s for s in sentences if s))
        labels.append(label)
    return Dataset.from_dict({"text": texts, "label": labels}).cast_column("label", ClassLabel(names=topics))


def generate(data_cfg) -> Dataset:
    """data=synthetic: sentiment reviews for 2 classes (the smoke data), topic reviews for more."""
    n_classes = int(data_cfg.get("n_classes") or 2)
    if n_classes == 2:
        return generate_synthetic(int(data_cfg.n_samples))
    return generate_topics(int(data_cfg.n_samples), n_classes)


def load_raw(data_cfg) -> Dataset:
    """The whole labeled dataset (before dedup and split) with a stable row index `idx`."""
    if data_cfg.name == "synthetic":
        ds = generate(data_cfg)
    elif data_cfg.name == "imdb":
        ds = load_imdb(data_cfg.hub_id, data_cfg.local_dir)
        bad = set(ds.unique("label")) - {0, 1}
        if bad:
            raise DataError(f"labels {sorted(bad)} found; labels must be 0 (neg) or 1 (pos)")
    elif data_cfg.get("text_column"):  # data=text and its presets (sst2, ag_news, ...): all given splits merged
        return merged(load_text(data_cfg))
    else:
        raise DataError(f"data.name={data_cfg.name!r} is not a known dataset; use imdb, synthetic or text")
    return ds.add_column("idx", list(range(len(ds))))


def prepare_splits(data_cfg) -> DatasetDict:
    # labelled text is read once: its own splits kept as given (no dedup across them), or merged and split
    parts = load_text(data_cfg) if data_cfg.get("text_column") else None
    splits = None
    if parts is not None and data_cfg.get("use_given_splits"):
        splits = given_splits(parts, int(data_cfg.split_seed), data_cfg.get("task", "single_label"))
    if splits is None:
        ds = merged(parts) if parts is not None else load_raw(data_cfg)
        if data_cfg.dedup:
            ds = drop_duplicates(ds)
        splits = split_dataset(ds, list(data_cfg.split), int(data_cfg.split_seed), data_cfg.get("task", "single_label"))
    splits = cap(splits, data_cfg.max_train_samples, data_cfg.max_eval_samples)
    log.info("splits: %s", ", ".join(f"{k} {len(v):,}" for k, v in splits.items()))
    return splits


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
    splits: DatasetDict, tokenizer, max_len: int, input_names: List[str], truncation: str = "head"
) -> DatasetDict:
    """Truncate to max_len (keeping the head, the tail or both: sweep/truncation.py), no padding (the
    collator pads). Cached by datasets under a fingerprint of the split, the tokenizer, max_len and
    the truncation, so a second run of the same data does not tokenize again."""
    key = f"{tokenizer_fingerprint(tokenizer)}-{max_len}-{'.'.join(input_names)}"
    if truncation != "head":  # the head's key stays as it was: its cache files still count
        key += f"-{truncation}"

    def encode(batch):
        if "text_pair" in batch:  # sentence pairs: the tokenizer joins them ([SEP], token_type_ids 1)
            encoded = tokenizer(batch["text"], batch["text_pair"], truncation=True, max_length=max_len)
        elif truncation == "head":
            encoded = encode_truncated(tokenizer, batch["text"], max_len)
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
    Labels as data.task holds them (sweep/tasks.py): class ids; a 0/1 row over num_labels labels
    (multi_label); the numbers themselves (regression: the task standardizes them for its loss)."""

    def __init__(self, input_names: List[str], pad_token_id: int, max_len: int, padding: str, task=None, num_labels=0):
        self.input_names, self.pad_token_id, self.max_len, self.padding = input_names, pad_token_id, max_len, padding
        self.task, self.num_labels = task or "single_label", num_labels

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
        sequences = rows["input_ids"]
        width = self.max_len if self.padding == "max_length" else max(len(s) for s in sequences)
        batch = {}
        for name in self.input_names:
            fill = self.pad_token_id if name == "input_ids" else 0
            tensor = torch.full((len(sequences), width), fill, dtype=torch.long)
            for row, values in enumerate(rows[name]):
                tensor[row, : len(values)] = torch.tensor(values, dtype=torch.long)
            batch[name] = tensor
        if "attention_mask" not in batch:
            batch["attention_mask"] = (batch["input_ids"] != self.pad_token_id).long()
        batch["labels"] = self.labels(rows["label"])
        batch["idx"] = torch.tensor(rows["idx"], dtype=torch.long)
        return batch


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
        batches = length_grouped_batches([len(ids) for ids in ds["input_ids"][:]], batch_size, shuffle_seed)
    else:
        order = RandomSampler(ds, generator=torch.Generator().manual_seed(shuffle_seed))
        batches = BatchSampler(order, batch_size, drop_last=False)
    if skip_batches:
        batches = list(batches)[skip_batches:]
    return DataLoader(
        ds, sampler=batches, batch_size=None, collate_fn=collator, num_workers=num_workers, pin_memory=pin_memory
    )
