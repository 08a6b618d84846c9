"""The experiment tracker (a wandb run per job, or none) and the files of a run dir, each written
atomically: a killed run never leaves a half-written file that looks complete."""

import json
import logging
import math
import os
import secrets
import shutil
import string
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd

from sweep.errors import InputError

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions_test.parquet"
BEST_DIR = "best"
WANDB_ID_FILE = "wandb_id"  # the run dir's wandb run id: a resumed or requeued job continues that run
_UMASK = os.umask(0)
os.umask(_UMASK)


# ---------------------------------------------------------------- atomic files


@contextmanager
def atomic_path(target: Path, is_dir: bool = False) -> Iterator[Path]:
    """Yields a temp path next to target; on success it replaces target in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_UMASK)  # mkstemp/mkdtemp create private files
        if is_dir and target.exists():
            # a directory cannot be replaced in one rename: move the old one aside first
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if is_dir else tmp.unlink()


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(path: Path, data: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({k: _clean(v) for k, v in data.items()}, indent=2) + "\n")


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_history(path: Path, rows: List[Dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def write_predictions(path: Path, columns: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(columns).to_parquet(tmp, index=False)


# ---------------------------------------------------------------- tracker


class NullTracker:
    """logger=none: nothing leaves the run dir."""

    def log(self, metrics: Dict[str, float], step: int) -> None:
        pass

    def summary(self, metrics: Dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def wandb_run_id(run_dir: Path, resume: bool = True) -> str:
    """The wandb run id kept in the run dir, created (atomically) on the job's first start; a new one
    when the job does not resume (trainer.resume=false starts over)."""
    path = Path(run_dir) / WANDB_ID_FILE
    if resume and path.is_file():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # as wandb makes them
    with atomic_path(path) as tmp:
        tmp.write_text(run_id + "\n")
    return run_id


class WandbTracker:
    """One wandb run per run dir, resumed when the job resumes (one continuous history however
    often it restarts); offline by default (`wandb sync` uploads it later)."""

    def __init__(
        self,
        run_dir: Path,
        config: Dict[str, Any],
        project: str,
        entity: Optional[str],
        mode: str,
        group: str,
        name: str,
        tags: List[str],
    ):
        import wandb  # only when the logger is used: model code and the bench run without wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            entity=entity,
            mode=os.environ.get(
                "WANDB_MODE", mode
            ),  # the env var wins, so WANDB_MODE=online works with the default config
            dir=str(run_dir),
            id=wandb_run_id(run_dir, config.get("trainer", {}).get("resume", True)),
            resume="allow",  # continue the run if it exists (online), else start it
            config=config,
            group=group,
            name=name,
            tags=tags,
            job_type="train",
            reinit="create_new",  # joblib workers run several jobs in one process
            # wandb >= 0.2x has no start_method: its service process is thread-safe. A scheduler's SIGTERM
            # (requeue, pre-emption, time limit) reaches that service too, which dies without writing
            # what it buffered (15 s by default): write each record to the run file at once
            settings=wandb.Settings(console="off", silent=True, x_transaction_log_flush_interval=0.01),
        )
        self.run.define_metric("epoch")
        for prefix in ("train/*", "valid/*", "test/*"):
            self.run.define_metric(prefix, step_metric="trainer/step")

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self.run.log({**metrics, "trainer/step": step})

    def summary(self, metrics: Dict[str, Any]) -> None:
        for key, value in metrics.items():
            self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as error:  # e.g. its service killed with the job: must not replace the run's own outcome
            log.warning(
                "the wandb run did not finish cleanly (%s: %s); what it logged is in %s",
                type(error).__name__,
                error,
                self.run.dir,
            )


def start_tracker(logger_cfg, run_dir: Path, config: Dict[str, Any], group: str, name: str, tags: List[str]):
    if logger_cfg.name == "none":
        return NullTracker()
    if logger_cfg.name == "wandb":
        return WandbTracker(run_dir, config, logger_cfg.project, logger_cfg.entity, logger_cfg.mode, group, name, tags)
    raise InputError(f"logger.name={logger_cfg.name!r} is not a logger; use wandb or none")
