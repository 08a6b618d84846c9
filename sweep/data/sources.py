"""Data: load -> dedup, split, cap (sweep/data/splits.py) -> tokenize (cached) -> DataLoaders."""

import logging
import random
from pathlib import Path
from typing import Optional

from datasets import ClassLabel, Dataset, DatasetDict, concatenate_datasets, load_dataset

from sweep.data.splits import cap, drop_duplicates, given_splits, merged, split_dataset
from sweep.data.text_files import drop_unusable, load_text, read_data_file

# DataError lives beside the text loader, which raises it too
from sweep.errors import DataError
from sweep.rundir import LABEL_NAMES

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


def with_preamble(ds: Dataset, words: int, seed: int = 1) -> Dataset:
    """Each review after `words` words of neutral filler sentences (its own random stream: the reviews
    stay those of preamble_words=0), so that what decides the label sits past the first window."""
    rng = random.Random(seed)
    sentences = [s.split() for s in _FILLER if s]

    def preamble() -> str:
        out = []
        while len(out) < words:
            out += rng.choice(sentences)
        return " ".join(out[:words])

    texts = [f"{preamble()} {text}" for text in ds["text"]]
    return Dataset.from_dict({"text": texts, "label": ds["label"]}, features=ds.features)


def generate(data_cfg) -> Dataset:
    """data=synthetic: sentiment reviews for 2 classes (the smoke data), topic reviews for more;
    data.preamble_words of filler before each."""
    n_classes = int(data_cfg.get("n_classes") or 2)
    if n_classes == 2:
        ds = generate_synthetic(int(data_cfg.n_samples))
    else:
        ds = generate_topics(int(data_cfg.n_samples), n_classes)
    words = int(data_cfg.get("preamble_words") or 0)
    return with_preamble(ds, words) if words else ds


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
