"""Hydra callbacks. FailedJobs: at the end of a sweep, list the jobs that failed or were
interrupted (read from their metrics.json) and exit non-zero, so scripts and CI notice."""
import json
import logging
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("sweep.callbacks")


class FailedJobs(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = []
        for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
            if metrics_file.stat().st_mtime < getattr(self, "started", 0):
                continue  # not touched by this sweep
            metrics = json.loads(metrics_file.read_text())
            if metrics.get("status") != "completed":
                failed.append(f"  {metrics_file.parent.name}: {metrics.get('status')}: {metrics.get('error')}")
        if failed:
            log.error("%d job(s) of the sweep in %s did not complete:\n%s", len(failed), sweep_dir, "\n".join(failed))
            sys.exit(1)
