"""Shared test helpers: the repo paths, the train app as a real subprocess, and one smoke sweep
that several test modules read."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# before transformers / huggingface_hub are imported: the hub is unreachable here, fail at once
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = REPO.parent / "shared" / "data" / "imdb"
# the only metrics that differ between identical runs
TIMING_KEYS = {"train_seconds", "train_samples_per_s", "test_samples_per_s", "peak_memory_mib"}
SMOKE_GRID = ["model=bert,modernbert", "pooling=cls,mean", "experiment=smoke"]

needs_imdb = pytest.mark.skipif(
    not (IMDB_DIR / "train.parquet").is_file(),
    reason=f"the real IMDB parquet files are not at {IMDB_DIR} (they exist only inside this workplace)",
)


def app_env(**extra) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
    return env


def train(*overrides: str, multirun: bool = True, check: bool = True, timeout: int = 600, env=None):
    """Runs `python sweep/train.py [-m] overrides...` from the repo root, as a user would."""
    cmd = [sys.executable, str(REPO / "sweep" / "train.py")] + (["-m"] if multirun else []) + list(overrides)
    result = subprocess.run(cmd, cwd=REPO, env=env or app_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    return result


def start(*overrides, stdout=None):
    """Starts a sweep; its stdout (where Hydra logs) goes to the file stdout, if given."""
    cmd = [sys.executable, str(REPO / "sweep" / "train.py"), "-m", *overrides]
    out = open(stdout, "w") if stdout else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=REPO, env=app_env(), stdout=out, stderr=subprocess.PIPE, text=True)


def wait_for_log(path, text, process, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and text in path.read_text():
            return
        assert process.poll() is None, f"the run ended before '{text}': {process.stderr.read()[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"'{text}' never appeared in {path}")


def kill_after_epoch(tmp_path: Path, overrides, epoch: int = 1):
    """Runs the overrides once uninterrupted, and once killed (SIGKILL) right after `epoch`'s
    resumable state was saved. Returns (the killed run's dir, the uninterrupted run's dir)."""
    reference_dir, stopped_dir = tmp_path / "reference", tmp_path / "stopped"
    train(*overrides, f"hydra.sweep.dir={reference_dir}")
    reference = run_dirs(reference_dir)[0]
    process = start(*overrides, f"hydra.sweep.dir={stopped_dir}")
    run_dir = stopped_dir / reference.name
    wait_for_log(run_dir / "train.log", f"resumable state saved after epoch {epoch}", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return run_dir, reference


def compose_config(*overrides: str, hydra_node: bool = False):
    """The app's config as Hydra composes it for these overrides; with hydra_node, Hydra's own
    node too, set as the current HydraConfig so that ${hydra:...} resolves as in a job."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    import sweep.config  # noqa: F401  registers the schema and the resolvers

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra_node)
    if hydra_node:
        HydraConfig.instance().set_config(cfg)
    return cfg


def run_dirs(sweep_dir: Path):
    return sorted(p.parent for p in Path(sweep_dir).glob("*/.hydra"))


def metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def evaluate_best(run_dir: Path, split: str, padding: str = "max_length", batch_size: int = 64) -> dict:
    """What a user does to reuse a run: reload its best checkpoint and evaluate it on one of its
    splits, rebuilt from the run's saved config."""
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from sweep.data import Collator, make_loader, prepare_splits, tokenize
    from sweep.loop import evaluate
    from sweep.model import Classifier, encoder_input_names

    cfg = OmegaConf.load(Path(run_dir) / ".hydra/config.yaml")
    model = Classifier.from_pretrained(Path(run_dir) / "best")
    tokenizer = AutoTokenizer.from_pretrained(Path(run_dir) / "best")
    names = encoder_input_names(model.encoder, tokenizer)
    data = tokenize(prepare_splits(cfg.data), tokenizer, cfg.data.max_len, names)[split]
    collator = Collator(names, tokenizer.pad_token_id, cfg.data.max_len, padding)
    return evaluate(model, make_loader(data, collator, batch_size), torch.device("cpu"))


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """The README's smoke grid (2 models x 2 poolings, tiny models, generated data), run once."""
    sweep_dir = tmp_path_factory.mktemp("smoke") / "sweep"
    train(*SMOKE_GRID, f"hydra.sweep.dir={sweep_dir}")
    return sweep_dir
