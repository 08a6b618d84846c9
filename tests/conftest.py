"""Fixtures shared by the test modules: the runs that several tests only read, trained once per
test session. Helpers live in tests/helpers/.

The suite runs on pytest-xdist workers (the README's `-n 2`), each its own pytest session: a
shared run is trained by the first worker that asks for it, into a dir above every worker's own,
while the others wait on its lock and then read it."""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

# before transformers / huggingface_hub are imported: the hub is unreachable here, fail at once;
# the in-process runs read the same settings a subprocess gets from helpers.app.app_env
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_key, _value)

# each worker its share of the cores, before torch starts (it reads OMP_NUM_THREADS once), and the
# app's subprocesses the same: two workers of all-core thread pools on 2 cores fight over both,
# and a run compared with another must sum its floats on the same number of threads
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

from helpers.app import SMOKE_GRID, train_in_process  # noqa: E402  after the environment above
from sweep.launch.cluster import POLL_ENV  # noqa: E402

# the submitit launchers look at their jobs 4 times as often as a user's (every 2 s): each job the
# tests wait for is seen ended up to 1.5 s sooner
os.environ.setdefault(POLL_ENV, "0.5")

# 2 models x 2 poolings x 2 seeds, short: 4 cells of 2 seeds each, with 2-epoch curves
SEEDS_GRID = [
    "model=bert,modernbert",
    "pooling=cls,mean",
    "experiment=smoke",
    "logger=none",
    "seed=1,2",
    "trainer.epochs=2",
    "data.n_samples=1000",
    "trainer.save_best=false",
]


# both families x the learned and the side-by-side pooling (cls_mean: [CLS] and the masked mean), one
# epoch: test_pooling checks that they learn, test_export exports every pooling family of both
LEARNED_POOLINGS_GRID = [
    "experiment=smoke",
    "model=bert,modernbert",
    "logger=none",
    "pooling=cls_mean,attention",
    "trainer.epochs=1",
]


SHARED_RUNS = (
    "smoke_sweep",
    "seeds_sweep",
    "learned_poolings_sweep",
)  # the session fixtures below: trained once, read by many files


def pytest_collection_modifyitems(items):
    """The order xdist hands out test files (--dist loadfile --no-loadscope-reorder): the SLURM
    tests first, mostly waits on the scheduler that the other worker's tests fill; then the files
    with slow tests; the quick files last, to even out the two workers' ends. Within a tier, the
    first file to read each shared run comes first and the other files that read one come last:
    the worker that is not training a shared run runs other files meanwhile, not waiting on its lock."""
    marks, reads = {}, {}
    for item in items:
        marks.setdefault(item.path, set()).update(m for m in ("slurm", "slow") if item.get_closest_marker(m))
        reads.setdefault(item.path, set()).update(run for run in SHARED_RUNS if run in item.fixturenames)

    def tier(path):
        return ("slurm" not in marks[path], "slow" not in marks[path])

    first_readers = {}
    for path in marks:  # in collection order
        for run in reads[path]:
            first_readers.setdefault((tier(path), run), path)
    rank = {path: 0 if path in first_readers.values() else (2 if reads[path] else 1) for path in marks}
    # a stable sort by file: each file's tests keep their order
    items.sort(key=lambda item: (*tier(item.path), rank[item.path]))


def trained_once(tmp_path_factory, name: str, overrides, setup=None) -> Path:
    """The sweep dir of `overrides`, trained once for the whole test session: by this process, or
    by the xdist worker that got the lock first. Tests only read it (copy it to change it). `setup`,
    handed the sweep dir's parent before the training, returns more overrides (where trackers log)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's base temp; each worker's own is a dir inside it
    home = root / name
    sweep_dir = home / "sweep"
    with FileLock(str(root / f"{name}.lock")):
        done = home / "trained"
        if not done.exists():
            shutil.rmtree(home, ignore_errors=True)  # what a worker that failed half-way left
            more = setup(home) if setup else []
            train_in_process(*overrides, *more, f"hydra.sweep.dir={sweep_dir}")
            done.touch()
    return sweep_dir


def smoke_trackers(home: Path) -> list:
    """MLflow (best/ registered) and TensorBoard beside wandb, where their extras are installed:
    test_trackers serves home/mlflow.db with a real `mlflow server` and reads these runs back instead
    of training the grid again. The experiment is made here to keep its artifacts in home: one that
    a client makes at a sqlite URI keeps them in ./mlruns, in the checkout."""
    if not all(importlib.util.find_spec(extra) for extra in ("mlflow", "tensorboard")):
        return []
    from mlflow.tracking import MlflowClient

    home.mkdir(parents=True)
    store = f"sqlite:///{home / 'mlflow.db'}"
    MlflowClient(tracking_uri=store).create_experiment("synthetic", artifact_location=(home / "mlartifacts").as_uri())
    return [
        "logger.trackers=[wandb,mlflow,tensorboard]",
        f"logger.tracking_uri={store}",
        "logger.log_model=true",
        "logger.registered_model=smoke-classifier",
    ]


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """The README's smoke grid (2 models x 2 poolings, tiny models, generated data), run once; logged
    to MLflow and TensorBoard too (smoke_trackers)."""
    return trained_once(tmp_path_factory, "smoke", SMOKE_GRID, smoke_trackers)


@pytest.fixture(scope="session")
def learned_poolings_sweep(tmp_path_factory):
    """Both tiny families with pooling=cls_mean and attention, one epoch, run once."""
    return trained_once(tmp_path_factory, "learned_poolings", LEARNED_POOLINGS_GRID)


@pytest.fixture(scope="session")
def seeds_sweep(tmp_path_factory):
    """The smoke grid over seed=1,2 for the collector (mean, std, seed-aware tests), run once."""
    return trained_once(tmp_path_factory, "collect", SEEDS_GRID)
