"""Copies of real run dirs edited the way crashes, kills, reruns and hand-made predictions leave
them, for the collector's tests."""

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from helpers.rundirs import metrics as read_metrics
from helpers.rundirs import run_dirs


def copy_tree(src: Path, dst: Path) -> Path:
    """A sweep or run dir without its checkpoints and wandb files (the collector never reads them)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("best", "wandb", "*.pt"))
    return dst


def edit_metrics(run_dir: Path, **values) -> dict:
    metrics = {**read_metrics(run_dir), **values}
    (Path(run_dir) / "metrics.json").write_text(json.dumps(metrics))
    return metrics


REMOVE = object()  # edit_config(run, key=REMOVE): a config without that key (an older schema)


def edit_config(run_dir: Path, **dotted) -> None:
    """Sets (or, with REMOVE, deletes) keys of a run's .hydra/config.yaml; dots in keys as `__`."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        *parents, leaf = key.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        if value is REMOVE:
            del node[leaf]
        else:
            node[leaf] = value
    path.write_text(yaml.safe_dump(config))


def age(run_dir: Path, seconds: float) -> None:
    """Makes a run's files look written `seconds` earlier than now (a copy keeps its source's times)."""
    when = time.time() - seconds
    for path in [Path(run_dir), *Path(run_dir).rglob("*")]:
        os.utime(path, (when, when))


def reseed(run_dir: Path, seed: int) -> None:
    """A copied run that claims another seed everywhere the contract records it."""
    config = Path(run_dir) / ".hydra" / "config.yaml"
    config.write_text(
        "\n".join(f"seed: {seed}" if line.startswith("seed:") else line for line in config.read_text().splitlines())
        + "\n"
    )
    overrides = Path(run_dir) / ".hydra" / "overrides.yaml"
    overrides.write_text(
        "\n".join(
            f"- seed={seed}" if line.startswith("- seed=") else line for line in overrides.read_text().splitlines()
        )
        + "\n"
    )
    edit_metrics(run_dir, seed=seed)


def many_runs(sweep_dir: Path, dst: Path, count: int = 200) -> Path:
    """count run dirs made by copying the real ones under new seeds (for the hand-timed 200-run case)."""
    sources = run_dirs(sweep_dir)
    copy_tree(sweep_dir, dst)
    for source in sources:
        shutil.rmtree(dst / source.name)
    grid = dst / "multirun.yaml"  # the sweep asked for these seeds: none of its jobs is missing
    grid.write_text(grid.read_text().replace("- seed=1,2", f"- seed=range(1000,{1000 + 2 * (count // len(sources))})"))
    for i in range(count):
        target = dst / f"run{i:04d}"
        copy_tree(sources[i % len(sources)], target)
        # sources alternate seed 1, 2 within a cell: keep that, so cells still pair up by seed
        reseed(target, 1000 + 2 * (i // len(sources)) + i % 2)
    return dst


def write_predictions(run_dir: Path, label, pred) -> None:
    label, pred = np.asarray(label), np.asarray(pred)
    pd.DataFrame(
        {"index": np.arange(len(label)), "label": label, "pred": pred, "prob_pos": pred.astype("float32")}
    ).to_parquet(Path(run_dir) / "predictions_test.parquet", index=False)
