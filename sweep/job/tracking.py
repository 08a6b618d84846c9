"""The experiment trackers of a job (logger.trackers): wandb, MLflow, TensorBoard, any of them at once,
or none. Each gets the same calls (log a row at a step, the final summary, finish with the run dir's
status) and each resumes with the job. A tracker that fails (a server down, a full disk) never costs
the run: one warning line, and the run goes on without it; the run dir is complete either way."""

import importlib.util
import logging
from pathlib import Path
from typing import Any, Dict, List

from sweep.errors import InputError, reason

log = logging.getLogger(__name__)

INSTALL = {  # what to install where a tracker's package (of the same name) is missing
    "wandb": "pip install wandb",
    "mlflow": 'pip install -e ".[mlflow]"',
    "tensorboard": 'pip install -e ".[tensorboard]"',
}


class Trackers:
    """The job's trackers behind one face; each call goes to every tracker still working."""

    def __init__(self, trackers: Dict[str, Any]):
        self.trackers = trackers

    def _each(self, call: str, *args) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, call)(*args)
            except Exception as error:  # the tracker, not the run: say it once and go on without it
                log.warning(
                    "%s stopped tracking this run (%s); the run goes on, its run dir complete", name, reason(error)
                )
                del self.trackers[name]

    def log(self, metrics: Dict[str, float], step: int) -> None:
        self._each("log", metrics, step)

    def summary(self, metrics: Dict[str, Any]) -> None:
        self._each("summary", metrics)

    def finish(self, exit_code: int = 0) -> None:
        self._each("finish", exit_code)


def open_tracker(name: str, logger_cfg, run_dir: Path, config: Dict[str, Any], group: str, run_name: str, tags):
    if name == "wandb":
        from sweep.job.wandb_tracker import WandbTracker

        cfg = logger_cfg
        return WandbTracker(run_dir, config, cfg.project, cfg.entity, cfg.mode, group, run_name, tags)
    if name == "mlflow":
        from sweep.job.mlflow_tracker import MlflowTracker

        return MlflowTracker(logger_cfg, run_dir, config, group, run_name, tags)
    from sweep.job.tensorboard_tracker import TensorboardTracker

    return TensorboardTracker(run_dir, config)


def start_tracker(logger_cfg, run_dir: Path, config: Dict[str, Any], group: str, name: str, tags: List[str]):
    """Every tracker of logger.trackers, started (resumed where the run dir kept its run). A missing
    package is the user's to fix: one line saying what to install, before anything trains."""
    for tracker in logger_cfg.trackers:  # each package there, before any tracker starts
        if importlib.util.find_spec(tracker) is None:
            raise InputError(f"logger.trackers has {tracker}, which is not installed: {INSTALL[tracker]}")
    started = {}
    for tracker in logger_cfg.trackers:
        try:
            started[tracker] = open_tracker(tracker, logger_cfg, run_dir, config, group, name, tags)
        except Exception as error:  # a server down at the start: the run goes on without it
            log.warning("%s could not start tracking this run (%s); the run goes on without it", tracker, reason(error))
    return Trackers(started)
