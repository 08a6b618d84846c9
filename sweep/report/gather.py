"""The runs to compare: run dirs and sweep dirs found under the given paths, each run dir read into a
RunRecord (whatever is missing or unreadable becomes its status), and the jobs a sweep's
multirun.yaml asked for that left no run dir."""

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

from sweep.errors import CollectError
from sweep.report.configs import flatten, resolve_config
from sweep.report.record import RunRecord
from sweep.rundir import (
    BEST_DIR,
    CONFIG_FILE,
    EXPORT_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    MULTIRUN_FILE,
    ONNX_DIR,
    OVERRIDES_FILE,
    TUNE_JOURNAL,
    WANDB_DIR,
    Status,
    is_run_dir,
    load_metrics,
    read_history,
    read_json,
    read_yaml,
)

SKIP_DIRS = {BEST_DIR, WANDB_DIR, HYDRA_DIR, "__pycache__"}  # inside a run dir: never another run


def scan(path: Path) -> Tuple[List[Path], List[Path]]:
    """Run dirs and sweep dirs (with a multirun.yaml) at or below path; never inside a run dir."""
    if is_run_dir(path):
        return [path], []
    runs, sweeps = [], [path] if (path / MULTIRUN_FILE).is_file() else []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir() and entry.name not in SKIP_DIRS:
            more_runs, more_sweeps = scan(Path(entry.path))
            runs, sweeps = runs + more_runs, sweeps + more_sweeps
    return runs, sweeps


def first_line(text) -> str:
    return str(text).strip().splitlines()[0][:300] if text and str(text).strip() else ""


def load_run(path: Path) -> RunRecord:
    """One run dir -> RunRecord; whatever is missing or unreadable becomes its status, never an exception."""
    run = RunRecord(path, Status.COMPLETED)  # until something below says otherwise
    try:
        run.config = flatten(read_yaml(path / CONFIG_FILE) or {})
        run.has_config = bool(run.config)
        run.overrides = [str(o) for o in read_yaml(path / OVERRIDES_FILE) or []]
    except FileNotFoundError:
        pass
    except Exception as error:
        run.status, run.error = "unreadable", f"{HYDRA_DIR}: {type(error).__name__}: {first_line(error)}"
    try:
        run.metrics = load_metrics(path)
    except FileNotFoundError:
        run.status, run.error = "incomplete", f"no {METRICS_FILE}: killed before the end"
    except Exception as error:
        run.status, run.error = "unreadable", f"{METRICS_FILE}: {type(error).__name__}: {first_line(error)}"
    if run.status == Status.COMPLETED:
        run.status = run.metrics.get("status") or "unknown"
        run.error = first_line(run.metrics.get("error") or run.metrics.get(Status.PRUNED.value))  # or why it was pruned
        if run.status == Status.RUNNING:
            run.error = run.error or "no final metrics: still running, or killed without a chance to write them"
    run.config = resolve_config(run.config, run.metrics)
    for key, name in (("model", "model.name"), ("pooling", "pooling.name"), ("seed", "seed")):
        run.config.setdefault(name, run.metrics.get(key))  # a run without .hydra still names its cell
    if "method" in run.metrics:
        run.config.setdefault("method.name", run.metrics["method"])
    run.history = read_history(path)
    exported = read_json(path / BEST_DIR / ONNX_DIR / EXPORT_FILE) or {}
    int8 = exported.get("check", {}).get("onnx-int8", {})
    if int8.get("samples_per_s") is not None:  # the serving cost beside torch's, for runs exported to int8
        run.metrics = {**run.metrics, "onnx_int8_samples_per_s": int8["samples_per_s"]}
    return run


def expected_jobs(sweep_dir: Path) -> List[List[str]]:
    """The jobs a sweep's multirun.yaml asked for, each as its swept `key=value` overrides."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser  # Hydra's own sweep syntax

        task = read_yaml(sweep_dir / MULTIRUN_FILE)["hydra"]["overrides"]["task"]
        swept = [o for o in OverridesParser.create().parse_overrides(task) if o.is_sweep_override()]
        choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in swept]
    except Exception:  # no readable multirun.yaml or a syntax we cannot expand: call nothing missing
        return []
    return [list(job) for job in itertools.product(*choices)] if choices else []


def searched_keys(sweep_dir: Path) -> List[str]:
    """The keys a hydra/sweeper=tune sweep searched (its hydra.sweeper.params and command-line
    intervals), as its multirun.yaml records them; [] for any other sweep."""
    try:
        hydra = read_yaml(sweep_dir / MULTIRUN_FILE)["hydra"]
        if not str(hydra["sweeper"].get("_target_", "")).endswith("TuneSweeper"):
            return []
        intervals = [o.split("=", 1)[0] for o in hydra["overrides"]["task"] if "interval(" in o]
        return list(hydra["sweeper"].get("params") or {}) + intervals
    except Exception:  # no readable multirun.yaml: not known as a tune sweep
        return []


def missing_runs(sweep_dir: Path, runs: Sequence[RunRecord]) -> List[RunRecord]:
    have = [set(run.overrides) for run in runs if sweep_dir in run.path.parents]
    return [
        RunRecord(
            None, "missing", "no run dir: not started (the sweep is still running, or stopped early)", overrides=job
        )
        for job in expected_jobs(sweep_dir)
        if not any(set(job) <= h for h in have)
    ]


def latest(root: Path) -> Path:
    """The most recently started sweep under root/multirun, else the most recent run under root/runs."""
    sweeps = scan(root / "multirun")[1] if (root / "multirun").is_dir() else []
    if sweeps:  # multirun.yaml is written when the sweep starts
        return max(sweeps, key=lambda p: (p / MULTIRUN_FILE).stat().st_mtime)
    singles = scan(root / "runs")[0] if (root / "runs").is_dir() else []
    if singles:
        return max(singles, key=lambda p: p.stat().st_mtime)
    raise CollectError(
        f"nothing to collect: no sweep in {(root / 'multirun').resolve()} and no run in {(root / 'runs').resolve()}"
    )


@dataclass
class Gathered:
    runs: List[RunRecord]  # jobs that never started included
    out: Path  # the default output dir
    title: str
    searched: List[str]  # the keys a tune sweep among them searched ([]: none)
    journals: List[Path] = field(default_factory=list)  # the tune sweeps' Optuna journals


def gather(paths: Sequence[Path], root: Path, all_runs: bool) -> Gathered:
    """The runs to collect, where the report goes by default, its title, and what tune sweeps searched."""
    if all_runs and not root.is_dir():
        raise CollectError(f"nothing to collect: {root.resolve()} does not exist")
    paths = [root] if all_runs else list(paths) or [latest(root)]
    for path in paths:
        if not path.is_dir():
            raise CollectError(f"{path}: {'not a directory' if path.exists() else 'no such directory'}")
    runs, missing, seen, searched, journals = [], [], set(), [], []
    for path in paths:
        run_dirs, sweep_dirs = scan(path)
        searched += [key for sweep_dir in sweep_dirs for key in searched_keys(sweep_dir) if key not in searched]
        journals += [d / TUNE_JOURNAL for d in sweep_dirs if (d / TUNE_JOURNAL).is_file() and searched_keys(d)]
        fresh = [p for p in run_dirs if p.resolve() not in seen]  # a dir named twice is one run, not a rerun
        seen.update(p.resolve() for p in fresh)
        runs += [load_run(p) for p in fresh]
        missing += [run for sweep_dir in sweep_dirs for run in missing_runs(sweep_dir, runs)]
    if not runs and not missing:
        raise CollectError(
            f"nothing to collect: no run dir (one with {HYDRA_DIR}/ or {METRICS_FILE}) in "
            + ", ".join(str(p.resolve()) for p in paths)
        )
    if len(paths) == 1 and not all_runs:
        return Gathered(runs + missing, paths[0], str(paths[0]), searched, journals)
    title = f"all runs under {root}" if all_runs else ", ".join(map(str, paths))
    return Gathered(runs + missing, root / "collected", title, searched, journals)
