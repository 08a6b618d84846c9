"""Weights & Biases: a wandb run per run dir, resumed with the job."""

import logging
import os
import secrets
import string
from pathlib import Path
from typing import Any, Dict, List, Optional

from sweep.rundir import WANDB_ID_FILE, keep_tracker_id

log = logging.getLogger(__name__)


def wandb_run_id(run_dir: Path, resume: bool = True) -> str:
    """The wandb run id kept in the run dir, created (atomically) on the job's first start; a new one
    when the job does not resume (trainer.resume=false starts over)."""
    path = Path(run_dir) / WANDB_ID_FILE
    if resume and path.is_file():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # as wandb makes them
    keep_tracker_id(path, run_id)
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
