"""MLflow: one MLflow run per run dir, in one experiment per data set (logger.experiment), at
logger.tracking_uri, else MLFLOW_TRACKING_URI, else the project's own SQLite store (outputs/mlflow.db,
artifacts in outputs/mlartifacts), so one `mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db`
shows every sweep. The run is named as the run dir, tagged with the cell and the sweep, holds the
resolved config as params, every logged row as metrics with its step, and at the end metrics.json,
history.csv and the model card; its status follows the run dir's. A job that resumes continues the
same run (its id kept in RUN_DIR/mlflow_id), each step logged once."""

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from sweep.report.configs import flatten
from sweep.rundir import (
    BEST_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    MLFLOW_ID_FILE,
    MODEL_CARD_FILE,
    keep_tracker_id,
    read_json,
)

log = logging.getLogger(__name__)

DEFAULT_STORE = Path("outputs") / "mlflow.db"  # beside the sweeps Hydra writes, relative to the launch dir
DEFAULT_ARTIFACTS = Path("outputs") / "mlartifacts"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param's value
BATCH = 100  # params per log_batch call, MLflow's limit
# the run dir's status -> the MLflow run's
STATUSES = {"completed": "FINISHED", "pruned": "FINISHED", "interrupted": "KILLED"}
# a server that does not answer fails the tracker in seconds, not after MLflow's minutes of retries
QUICK_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri(configured: Optional[str]) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_STORE.resolve()}"


def experiment_id(client, name: str, uri: str) -> str:
    """The experiment's id, created on the first run of the project (two jobs at once: one creates it)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = DEFAULT_ARTIFACTS.resolve().as_uri() if uri == tracking_uri(None) and "sqlite" in uri else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another job created it meanwhile
        return client.get_experiment_by_name(name).experiment_id


class MlflowTracker:
    def __init__(self, logger_cfg, run_dir: Path, config: Dict[str, Any], group: str, name: str, tags):
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        for key, value in QUICK_FAILURE.items():
            os.environ.setdefault(key, value)
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        self.run_dir, uri = Path(run_dir), tracking_uri(logger_cfg.tracking_uri)
        self.log_model, self.registered = logger_cfg.log_model, logger_cfg.registered_model
        experiment = logger_cfg.experiment or config["data"]["name"]
        store = Path(uri.split(":///", 1)[1]) if uri.startswith("sqlite:///") else None
        if store is not None:
            store.parent.mkdir(parents=True, exist_ok=True)
        # a new SQLite store is created (its schema migrated) by its first client: one job at a time
        with FileLock(f"{store}.lock") if store is not None else contextlib.nullcontext():
            self.client = MlflowClient(tracking_uri=uri)
            self.experiment_id = experiment_id(self.client, experiment, uri)
        self.run_id, self.logged = self.open_run(config, name, group, tags)
        self.last_step = max(self.logged.values(), default=0)

    def open_run(self, config, name: str, group: str, tags):
        """(run id, the last step each metric was logged at): the run dir's run, continued when the job
        resumes and the store still holds it; else a new one, its params the resolved config."""
        kept = self.run_dir / MLFLOW_ID_FILE
        if config.get("trainer", {}).get("resume", True) and kept.is_file():
            run_id = kept.read_text().strip()
            try:
                run = self.client.get_run(run_id)
            except Exception:  # another store, or deleted: start a new run
                run = None
            if run is not None:
                self.client.update_run(run_id, status="RUNNING")
                logged = {
                    key: max(m.step for m in self.client.get_metric_history(run_id, key)) for key in run.data.metrics
                }
                return run_id, logged
        cell = {tag.split(":", 1)[0]: tag.split(":", 1)[1] for tag in tags}
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={**cell, "seed": str(config.get("seed")), "sweep": group, "run_dir": str(self.run_dir.resolve())},
        )
        run_id = run.info.run_id
        keep_tracker_id(kept, run_id)
        self.log_params(run_id, config)
        return run_id, {}

    def log_params(self, run_id: str, config: Dict[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in flatten(config).items()]
        for start in range(0, len(params), BATCH):
            self.client.log_batch(run_id, params=params[start : start + BATCH])

    def log(self, metrics: Dict[str, float], step: int) -> None:
        """Each number at its step; a step this run logged before the job resumed is not logged again."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        fresh = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and step > self.logged.get(key, -1)
        ]
        if fresh:
            self.client.log_batch(self.run_id, metrics=fresh)
            self.logged.update({m.key: step for m in fresh})
        self.last_step = max(self.last_step, step)

    def summary(self, metrics: Dict[str, Any]) -> None:
        """The final figures (test, cost) at the last step; words (the status) as tags."""
        self.log({k: v for k, v in metrics.items() if v is not None}, self.last_step)
        for key, value in metrics.items():
            if isinstance(value, str):
                self.client.set_tag(self.run_id, key, value[:MAX_PARAM_CHARS])

    def finish(self, exit_code: int = 0) -> None:
        """The run dir's files as artifacts, best/ as a model where asked, the status the run dir says."""
        status = (read_json(self.run_dir / METRICS_FILE) or {}).get("status", "failed")
        for path in (
            self.run_dir / METRICS_FILE,
            self.run_dir / HISTORY_FILE,
            self.run_dir / BEST_DIR / MODEL_CARD_FILE,
        ):
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        if self.log_model and status == "completed" and (self.run_dir / BEST_DIR).is_dir():
            self.register_best()
        self.client.set_terminated(self.run_id, status=STATUSES.get(status, "FAILED"))

    def register_best(self) -> None:
        """best/ as the run's artifacts under best/ (a transformers checkpoint, the pooling and head: no
        MLflow flavor, sweep.model.classifier.Classifier loads it), registered as a new version."""
        from mlflow.exceptions import MlflowException

        self.client.log_artifacts(self.run_id, str(self.run_dir / BEST_DIR), artifact_path=BEST_DIR)
        name = self.registered or self.client.get_experiment(self.experiment_id).name
        try:
            self.client.create_registered_model(name)
        except MlflowException:  # registered by an earlier run
            pass
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{BEST_DIR}"
        version = self.client.create_model_version(name, source, run_id=self.run_id)
        log.info("registered best/ as MLflow model %s, version %s", name, version.version)
