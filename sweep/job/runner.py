"""One job of the grid, start to end. run() keeps the lifecycle: skip a job that already completed
with the same config, write "running", handle SIGTERM, hold the GPU claim and the tracker, write a
failure or an interrupt into metrics.json before it propagates, and always clean up. execute() is
the job itself, as a recipe: assemble (everything that can fail on bad input), the Trainer (resumed
where the last validation left a state), the loop, test the best checkpoint, write the results."""

import contextlib
import gc
import hashlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, ContextManager, Dict, Optional

import datasets
import torch
import transformers
from omegaconf import DictConfig, OmegaConf

from sweep.config.metrics import DEFAULT_METRIC
from sweep.config.neutral import ADDED_KNOB_DEFAULTS, RERUN_NEUTRAL_KEYS
from sweep.errors import WriteError
from sweep.fit.compilation import reset_compiler
from sweep.fit.frozen_features import cached_features, uses_feature_cache
from sweep.fit.loop import TrainingLoop
from sweep.fit.trainer import Trainer
from sweep.job.assembly import check_config, prepare, require_model_identity
from sweep.job.tracking import start_tracker
from sweep.launch.interrupts import raise_interrupt
from sweep.launch.resources import set_threads
from sweep.launch.trial import Trial, TrialPruned
from sweep.model.device import resolve_device, resolve_precision
from sweep.rundir import (
    METRICS_FILE,
    STATE_FILE,
    MetricsRecord,
    Status,
    read_json,
    write_predictions,
)
from sweep.serve.model_card import write_model_card

log = logging.getLogger(__name__)


def config_fingerprint(config: Dict[str, Any]) -> str:
    """A run's identity: its resolved config less the keys a rerun may change (sweep/config/neutral.py) and
    the knobs added since older runs where they are at the value that does what those runs did."""
    config = json.loads(json.dumps(config))
    for dotted in (*RERUN_NEUTRAL_KEYS, *ADDED_KNOB_DEFAULTS):
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key, {})
        if dotted in RERUN_NEUTRAL_KEYS or (leaf in node and node[leaf] == ADDED_KNOB_DEFAULTS[dotted]):
            node.pop(leaf, None)
    for group in [key for key, node in config.items() if node == {}]:  # a group added since, all at its defaults
        del config[group]
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


class Job:
    """One job while it runs: its config, run dir, device, tracker and metrics.json."""

    def __init__(self, cfg: DictConfig, run_dir: Path, group: str, name: str, trial: Optional[Trial] = None):
        self.cfg, self.run_dir, self.group, self.name, self.trial = cfg, Path(run_dir), group, name, trial
        self.device = torch.device("cpu")  # where it trains: set in run() once the config is checked
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.fingerprint = config_fingerprint(self.config)
        self.tracker = None
        self.record = MetricsRecord(self.run_dir)

    def ended_before(self) -> Optional[Dict[str, Any]]:
        """metrics.json of this config's run when it ended before (completed, or pruned as a tune trial)."""
        previous = read_json(self.run_dir / METRICS_FILE)
        ended = (Status.COMPLETED, Status.PRUNED)
        if previous and previous.get("status") in ended and previous.get("config_hash") == self.fingerprint:
            metric = previous.get("select_metric", DEFAULT_METRIC)
            log.info(
                "skipped %s: %s before with the same config (%s %s)",
                self.run_dir,
                previous["status"],
                metric,
                previous.get(metric),
            )
            return previous
        return None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.record.update(
            {
                "model": OmegaConf.select(self.cfg, "model.name", throw_on_missing=False),  # checked in run()
                "pooling": self.cfg.pooling.name,
                "method": self.cfg.method.name,
                "seed": self.cfg.seed,
                "status": Status.RUNNING,
                "config_hash": self.fingerprint,
                **({"trial": self.trial.name} if self.trial is not None else {}),
            }
        )

    def start_tracker(self) -> None:
        cfg = self.cfg
        tags = [f"model:{cfg.model.name}", f"pooling:{cfg.pooling.name}", f"method:{cfg.method.name}"]
        self.tracker = start_tracker(self.cfg.logger, self.run_dir, self.config, self.group, self.name, tags)

    def end(self, status: Status, error: BaseException) -> None:
        try:
            self.record.update({"status": status, "error": f"{type(error).__name__}: {error}"})
        except WriteError as unwritable:  # the disk that failed the run: its error is what to report
            _to_log_file(logging.WARNING, "%s", unwritable)

    def pruned(self, trainer: Trainer, why: TrialPruned) -> float:
        """A trial its pruner stopped: its history and best valid figures, no test pass, no state."""
        self.record.update({"status": Status.PRUNED.value, **trainer.training_results(), "pruned": str(why)})
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)  # it ends here: nothing to resume
        self.tracker.summary({"status": Status.PRUNED.value, "pruned": str(why)})
        log.info("pruned %s", why)
        return trainer.state.best[trainer.best.metric]

    def finish(self, predictions: Dict[str, Any], results: Dict[str, Any], step: int) -> None:
        """The test predictions and the final metrics (inference cost included), in the run dir and the tracker."""
        write_predictions(self.run_dir, predictions)
        tested = {k: v for k, v in results.items() if k.startswith("test/") and v is not None}
        self.tracker.log(tested, step)
        final = {"status": Status.COMPLETED.value, **results}
        self.tracker.summary(final)
        self.record.update(final)
        write_model_card(self.run_dir, self.config)  # best/README.md, from the files just written
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)  # a finished run keeps best/, not optimizer states
        figures = "  ".join(f"{k} {v:.4f}" for k, v in tested.items() if k != "test/loss")
        log.info("test on the best checkpoint (epoch %s): %s", results["best_epoch"], figures)


def execute(job: Job) -> float:
    """The job as a recipe; returns its best trainer.select_metric."""
    reset_compiler()  # nothing compiled by an earlier job of this process counts against this one
    prepared = prepare(job.cfg, job.device)
    features = None
    if uses_feature_cache(job.cfg):  # a probe on pooled vectors: encoded once, or read from the cache
        features = cached_features(
            prepared, job.cfg, job.device, resolve_precision(job.cfg.trainer.precision, job.device)
        )
    trainer = Trainer(job, prepared, features)
    job.record.update(trainer.description())
    trainer.resume()
    job.record.update(trainer.compile())
    try:
        TrainingLoop(trainer).run()  # the optimizer steps not yet in the state, validated and kept
    except TrialPruned as why:
        return job.pruned(trainer, why)
    trainer.release_training_state()
    test, inference = trainer.test_best()
    job.record.update(trainer.compiled.record())  # what ran compiled, now that everything has run
    job.finish(trainer.task.columns(test), trainer.results(test, inference), trainer.state.global_step)
    return trainer.state.best[trainer.best.metric]


def run(
    cfg: DictConfig,
    run_dir: Path,
    group: str = "",
    name: str = "",
    device: Optional[str] = None,
    gpu_claim: Optional[ContextManager[Optional[str]]] = None,
    threads: Optional[int] = None,
    trial: Optional[Trial] = None,
) -> float:
    """Runs one job into run_dir and returns its best trainer.select_metric (what a sweeper optimises).
    device: where to train, when the caller chose it (else trainer.device decides).
    gpu_claim: entered once the run dir says "running", held until the run ends; the device it
    gives (if any) is where the job trains. A claim that fails is written down like any failure.
    threads: torch CPU threads for this job (None: torch's default).
    trial: the tune trial this job is (sweep/launch/trial.py): told the select metric after each
    validation, may prune it.
    A failure is written into the run dir (metrics.json, and train.log with its traceback) and
    raised; what the terminal shows of it is the caller's to say (sweep/train.py)."""
    if not sys.stderr.isatty():  # progress bars only for a person at a terminal, not in logs
        datasets.disable_progress_bars()
        transformers.logging.disable_progress_bar()
    job = Job(cfg, run_dir, group, name or Path(run_dir).name, trial)
    previous = job.ended_before() if cfg.trainer.resume else None
    if previous is not None:
        return previous.get(previous.get("select_metric", DEFAULT_METRIC))
    log.info("run dir %s\nresolved config:\n%s", job.run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    job.start()
    previous_handler = signal.signal(signal.SIGTERM, raise_interrupt)
    exit_code = 1
    held = contextlib.ExitStack()
    try:
        check_config(cfg)  # every bad value in one line, before anything loads
        require_model_identity(cfg.model)
        set_threads(threads)
        claimed = held.enter_context(gpu_claim) if gpu_claim is not None else None
        chosen = claimed or device
        job.device = torch.device(chosen) if chosen else resolve_device(cfg.trainer.device)
        job.start_tracker()
        valid_acc = execute(job)
        exit_code = 0
        return valid_acc
    except KeyboardInterrupt as stop:
        job.end(Status.INTERRUPTED, stop)
        log.warning("interrupted: %s; rerun the same command to resume from the last completed epoch", stop)
        raise
    except Exception as error:
        job.end(Status.FAILED, error)
        _to_log_file(logging.ERROR, "run failed: %s: %s", type(error).__name__, error, error=error)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if job.tracker is not None:
            job.tracker.finish(exit_code)
        held.close()  # the GPU goes back once the run is done with it
        del job
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _to_log_file(level: int, message: str, *args, error: Optional[BaseException] = None) -> None:
    """A record (with error's traceback) for the job's log files only, not the terminal: Hydra's
    file handler of train.log. The caller decides what the terminal shows."""
    exc_info = (type(error), error, error.__traceback__) if error is not None else None
    record = log.makeRecord(log.name, level, __file__, 0, message, args, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
