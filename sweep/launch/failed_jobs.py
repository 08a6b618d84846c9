"""Hydra callbacks. FailedJobs: at the end of a sweep, list the jobs that failed or were
interrupted (read from their metrics.json) and the jobs that left no metrics.json at all, and exit
non-zero, so scripts and CI notice."""

import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.launch.dirnames import job_dirname
from sweep.rundir import METRICS_FILE, Status, read_json

log = logging.getLogger("sweep.launch.failed_jobs")

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
RUN_DIRNAME_SUBDIR = "${run_dirname:${hydra:job.override_dirname}}"  # hydra.sweep.subdir in conf/config.yaml
NO_METRICS = f"left no {METRICS_FILE}: it died before it started; see its train.log or the launcher's output"


def expected_run_dirs(config: DictConfig) -> Optional[List[str]]:
    """The run-dir names of every job the sweep launched, derived as Hydra derives them: the basic
    sweeper's product of the overrides, each job's override_dirname, then run_dirname. None where
    that cannot be known from the config: another sweeper (Optuna, Ax pick jobs as they go), a
    custom hydra.sweep.subdir, or an override that needs Hydra's config loader (glob)."""
    hydra = config.hydra
    if hydra.sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    if OmegaConf.to_container(hydra.sweep, resolve=False).get("subdir") != RUN_DIRNAME_SUBDIR:
        return None
    params = hydra.sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(hydra.overrides.task)
    naming = hydra.job.config.override_dirname
    parser = OverridesParser.create()
    try:
        (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides(arguments), max_batch_size=None)
        return [job_dirname(job, naming) for job in jobs]
    except Exception as error:  # the check is a safety net: never let it hide the sweep's own outcome
        log.warning(
            "cannot list the sweep's jobs (%s: %s); jobs that left no metrics.json are not reported",
            type(error).__name__,
            error,
        )
        return None


class FailedJobs(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        expected = expected_run_dirs(config) or []
        problems: Dict[str, str] = {}
        for metrics_file in sorted(sweep_dir.glob(f"*/{METRICS_FILE}")):
            name = metrics_file.parent.name
            # a job of this sweep counts whatever its file's age (a job that died before writing
            # leaves the last sweep's status); any other dir only if this sweep touched it
            if name not in expected and metrics_file.stat().st_mtime < getattr(self, "started", 0):
                continue
            metrics = read_json(metrics_file) or {"status": None, "error": f"{METRICS_FILE} is not JSON"}
            if metrics.get("status") not in (Status.COMPLETED, Status.PRUNED):  # a pruned trial ended as asked
                problems[name] = f"{metrics.get('status')}: {metrics.get('error')}"
        for name in expected:
            if not (sweep_dir / name / METRICS_FILE).is_file():
                problems[name] = NO_METRICS
        if problems:
            lines = "\n".join(f"  {name}: {problem}" for name, problem in sorted(problems.items()))
            log.error("%d job(s) of the sweep in %s did not complete:\n%s", len(problems), sweep_dir, lines)
            sys.exit(1)
