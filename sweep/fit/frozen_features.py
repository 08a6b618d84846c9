"""method=frozen with a parameter-free pooling: the encoder never changes, so the pooled vectors of
every split are computed once, in inference mode, and cached on disk; the head then trains its
epochs on them in seconds. One pass yields every parameter-free pooling (cls, mean, max; cls_mean
is cls and mean side by side), so the other poolings of a sweep, and any rerun, read the cache.

The cache entry's key is everything that changes the vectors: the encoder's weights and config, the
tokenized rows of each split (datasets' fingerprints: the data, its caps, the tokenizer, max_len,
truncation and its windows), pooling.layers, the precision and the padding. An entry is a dir of one safetensors
file per split and meta.json (what the encoding cost), written atomically under a file lock, so
jobs of a sweep (joblib workers, SLURM nodes on a shared file system) encode each example once."""

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import xxhash
from filelock import FileLock
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from sweep.data.loaders import make_loader
from sweep.fit.inference_cost import TimedLoader, inference_cost, peak_memory
from sweep.model.classifier import Classifier
from sweep.model.device import Precision, model_inputs, to_device
from sweep.model.pooling import ENCODED, POOLERS, SIDE_BY_SIDE
from sweep.rundir import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what an entry holds changes: older entries are then never read
META_FILE = "meta.json"
SPLITS = ("train", "valid", "test")


def uses_feature_cache(cfg) -> bool:
    return cfg.method.name == "frozen" and cfg.pooling.name in POOLERS


def cache_root(configured: Optional[str]) -> Path:
    """method.feature_cache, else $ENCODER_SWEEP_CACHE/features, else ~/.cache/encoder_sweep/features."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("ENCODER_SWEEP_CACHE") or Path.home() / ".cache" / "encoder_sweep"
    return Path(base).expanduser() / "features"


def cache_key(model: Classifier, splits, layers: int, precision: str, padding: str, task: str = "single_label") -> str:
    """The entry's name: what decides the vectors and the labels stored beside them."""
    digest = xxhash.xxh3_128()
    described = {
        "version": CACHE_VERSION,
        "encoder": model.encoder.config.to_json_string(use_diff=False),
        "rows": {name: splits[name]._fingerprint for name in SPLITS},
        "layers": layers,
        "precision": precision,
        "padding": padding,
        **({"task": task} if task != "single_label" else {}),  # labels as the task batches them (0/1 rows, numbers)
    }
    digest.update(json.dumps(described, sort_keys=True).encode())
    for name, tensor in model.encoder.state_dict().items():  # the weights themselves: any checkpoint, any init
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class Features:
    """The cached vectors of one encoder over the splits, and what computing them cost."""

    splits: Dict[str, Dict[str, torch.Tensor]]  # split -> cls, mean, max, labels, idx (and windows: chunks)
    meta: Dict[str, Any]  # the encoding's cost: test_samples_per_s, peak memory, seconds, device
    hit: bool  # read from the cache (True) or encoded by this job
    seconds: float  # what this job spent on them: encoding and writing, or reading

    def rows(self, split: str, pooling: str) -> "FeatureRows":
        part = self.splits[split]
        parts = SIDE_BY_SIDE.get(pooling, (pooling,))  # cls_mean: the cached cls and mean side by side
        vectors = torch.cat([part[name] for name in parts], dim=-1)
        return FeatureRows(vectors, part["labels"], part["idx"], part.get("windows"))

    def record(self) -> Dict[str, Any]:
        """For metrics.json."""
        return {"feature_cache": "hit" if self.hit else "miss", "feature_seconds": self.seconds}


class FeatureRows(torch.utils.data.Dataset):
    """One split's vectors as batches: rows[list of positions] is a batch (sweep.data.loaders.make_loader).
    windows (data.truncation=chunks): how many vectors (windows) each text has, text by text."""

    def __init__(self, vectors: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, windows=None):
        self.vectors, self.labels, self.idx, self.windows = vectors, labels, idx, windows
        if windows is not None:
            self.first = torch.cumsum(windows, 0) - windows  # each text's first vector

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows) -> Dict[str, torch.Tensor]:
        rows = torch.as_tensor(rows)
        batch = {"labels": self.labels[rows], "idx": self.idx[rows]}
        if self.windows is None:
            return {"features": self.vectors[rows], **batch}
        counts = self.windows[rows]
        starts = torch.repeat_interleave(self.first[rows], counts)
        within = torch.arange(len(starts)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        return {"features": self.vectors[starts + within], "windows": counts, **batch}


def as_batch(batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return batch  # FeatureRows already gives whole batches


class FeatureHead(nn.Module):
    """The classifier's dropout and head over cached vectors: the same modules, so what trains here
    is what the classifier saves to best/."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.dropout, self.head, self.window_pool = classifier.dropout, classifier.head, classifier.window_pool

    def forward(self, features: torch.Tensor, windows: Optional[torch.Tensor] = None) -> torch.Tensor:
        if windows is not None:  # a text's window vectors pooled into its own first
            features = self.window_pool(features, windows)
        return self.head(self.dropout(features))


@torch.inference_mode()
def encode_split(model: Classifier, loader, device: torch.device, precision: Precision, desc: str):
    """Every parameter-free pooling of the split's token states, in fp32 on the CPU."""
    model.eval()
    pooled = {name: [] for name in ENCODED}
    labels, idx, windows = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
        batch = to_device(batch, device)
        inputs = model_inputs(batch)
        if "windows" in inputs:  # data.truncation=chunks: a vector per window, and how many each text has
            windows.append(inputs.pop("windows").cpu())
        with precision.autocast():
            states = model.token_states(**inputs)
        for name in ENCODED:
            pooled[name].append(POOLERS[name](states, batch["attention_mask"]).float().cpu())
        labels.append(batch["labels"].cpu())
        idx.append(batch["idx"].cpu())
    return {
        **{name: torch.cat(parts) for name, parts in pooled.items()},
        "labels": torch.cat(labels),
        "idx": torch.cat(idx),
        **({"windows": torch.cat(windows)} if windows else {}),
    }


def encode(prepared, device: torch.device, precision: Precision, eval_batch_size: int):
    """The splits' vectors, and the cost of the test split's pass (the inference cost of the frozen
    model: the encoder's forward and the pooling; the head adds nothing measurable)."""
    splits, meta = {}, {}
    started = time.perf_counter()
    for name in SPLITS:
        loader = make_loader(prepared.splits[name], prepared.collator, eval_batch_size)
        if name != "test":
            splits[name] = encode_split(prepared.model, loader, device, precision, f"encode {name}")
            continue
        timed = TimedLoader(loader, device)
        with peak_memory(device) as memory:
            splits[name] = encode_split(prepared.model, timed, device, precision, f"encode {name}")
            timed.stop()
        meta.update(inference_cost(timed, memory))
    meta.update({"encode_seconds": time.perf_counter() - started, "device": str(device), "precision": precision.name})
    return splits, meta


def cached_features(prepared, cfg, device: torch.device, precision: Precision) -> Features:
    """The job's vectors from the cache, encoded first (once, under the entry's lock) where absent."""
    started = time.perf_counter()
    key = cache_key(
        prepared.model, prepared.splits, cfg.pooling.layers, precision.name, cfg.data.padding, cfg.data.task
    )
    entry = cache_root(cfg.method.feature_cache) / key
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        hit = (entry / META_FILE).is_file()
        if hit:
            splits = {name: load_file(entry / f"{name}.safetensors") for name in SPLITS}
            meta = json.loads((entry / META_FILE).read_text())
        else:
            # the random streams as they were: a run that encodes trains as one that reads the cache
            # (each DataLoader draws a seed from torch's generator)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                splits, meta = encode(prepared, device, precision, cfg.data.eval_batch_size)
            with atomic_path(entry, is_dir=True) as tmp:
                for name, tensors in splits.items():
                    save_file(tensors, tmp / f"{name}.safetensors")
                (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    seconds = time.perf_counter() - started
    log.info(
        "features %s: %s (%.1fs) in %s",
        "read from the cache" if hit else "encoded and cached",
        ", ".join(f"{name} {len(part['labels'])}" for name, part in splits.items()),
        seconds,
        entry,
    )
    return Features(splits, meta, hit, seconds)
