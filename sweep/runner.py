"""One job of the grid, start to end: skip it if it already completed, prepare everything that can
fail before any training (model, data, tokenizer), fit with the best checkpoint and a resumable
state per epoch, test on the best checkpoint, and write the run-dir files. A failure or an
interrupt is written into metrics.json before it propagates; the tracker is always finished."""

import contextlib
import gc
import hashlib
import json
import logging
import math
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Dict, List, Optional, Tuple

import datasets
import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModel, set_seed

from sweep.compilation import WarmupBatch, compile_model, reset_compiler
from sweep.cost import TimedLoader, inference_cost, peak_memory
from sweep.data import Collator, DataError, make_loader, prepare_splits, tokenize
from sweep.errors import InputError
from sweep.loop import build_optimizer, evaluate, resolve_device, resolve_precision, train_epoch
from sweep.model import (
    META_FILE,
    Classifier,
    encoder_input_names,
    load_config,
    load_encoder,
    load_tokenizer,
    max_positions,
    require_padding,
    resolve_source,
)
from sweep.neutral import RERUN_NEUTRAL_KEYS  # a rerun that differs only in these is the same run
from sweep.resume import ResumeState
from sweep.tiny import tiny_config, train_tokenizer
from sweep.tracking import (
    BEST_DIR,
    HISTORY_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    atomic_path,
    read_json,
    start_tracker,
    write_history,
    write_json,
    write_predictions,
)

log = logging.getLogger(__name__)

STATE_FILE = "resume_state.pt"


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM (pre-emption, scancel, kill) handled like Ctrl-C."""


def config_fingerprint(config: Dict[str, Any]) -> str:
    config = json.loads(json.dumps(config))
    for dotted in RERUN_NEUTRAL_KEYS:
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.get(key, {})
        node.pop(leaf, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Prepared:
    model: Classifier
    tokenizer: Any
    splits: Any
    collator: Collator


def prepare(cfg: DictConfig, device: torch.device) -> Prepared:
    """Everything that can fail on bad input, before the first training step."""
    mcfg, dcfg = cfg.model, cfg.data
    if mcfg.tiny:
        limit = int(mcfg.tiny_config.get("max_position_embeddings", 512))
    else:
        source = resolve_source(mcfg.id, mcfg.offline_package, mcfg.offline_id)
        tokenizer = load_tokenizer(source)
        require_padding(tokenizer, source)
        limit = max_positions(load_config(source), tokenizer)
    check_max_len(dcfg.max_len, limit, mcfg.name)
    splits = prepare_splits(dcfg)
    set_seed(cfg.seed)
    if mcfg.tiny:
        train = splits["train"]
        texts = list(train["text"]) + (list(train["text_pair"]) if "text_pair" in train.column_names else [])
        tokenizer = train_tokenizer(texts, mcfg.family, int(mcfg.tiny_config.vocab_size))
        encoder = AutoModel.from_config(tiny_config(mcfg.family, tokenizer, OmegaConf.to_container(mcfg.tiny_config)))
    else:
        encoder = load_encoder(source)
    num_labels = splits["train"].features["label"].num_classes  # from the data: 2 for imdb, 4 for ag_news, ...
    model = Classifier(encoder, cfg.pooling.name, num_labels, head_dropout=cfg.trainer.head_dropout).to(device)
    input_names = encoder_input_names(encoder, tokenizer)
    collator = Collator(input_names, tokenizer.pad_token_id, dcfg.max_len, dcfg.padding)
    return Prepared(model, tokenizer, tokenize(splits, tokenizer, dcfg.max_len, input_names), collator)


def check_max_len(max_len: int, limit: Optional[int], model_name: str) -> None:
    """limit: the model's longest input, None where the model sets none (relative positions)."""
    if max_len < 8 or (limit is not None and max_len > limit):
        accepted = f"8 <= data.max_len <= {limit}" if limit is not None else "data.max_len >= 8"
        raise DataError(f"data.max_len={max_len} does not fit model {model_name!r}: use {accepted}")


def require_model_identity(model_cfg: DictConfig) -> None:
    """model=hf leaves model.id (what to load) and model.name (what names the run's cells in the
    table, run dirs and wandb) to the user."""
    needed = [("name", "roberta")] + ([] if model_cfg.tiny else [("id", "FacebookAI/roberta-base or a local dir")])
    for key, example in needed:
        if OmegaConf.is_missing(model_cfg, key):
            raise InputError(f"model.{key} is not set: add model.{key}=... (e.g. {example}) to the command")


def _cpu_copy(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def warmup_batches(job: Prepared, batch_size: int, eval_batch_size: int) -> List[WarmupBatch]:
    """One batch of every shape the run will feed the model: full and last partial train batches
    (forward + backward), full and last partial valid and test batches (evaluation). With dynamic
    padding the lengths are dynamic, so these cover the batch sizes."""
    splits, shapes = job.splits, []
    train_n = len(splits["train"])
    shapes += [("train", size, True) for size in {min(batch_size, train_n), train_n % batch_size} if size]
    for split in ("valid", "test"):
        n = len(splits[split])
        shapes += [(split, size, False) for size in {min(eval_batch_size, n), n % eval_batch_size} if size]
    seen, batches = set(), []
    for split, size, train in shapes:
        if (size, train) not in seen:
            seen.add((size, train))
            batches.append(WarmupBatch(job.collator(splits[split][list(range(size))]), train))
    return batches


class Run:
    """The state of one job while it runs."""

    def __init__(self, cfg: DictConfig, run_dir: Path, group: str, name: str, device: Optional[str] = None):
        self.cfg, self.run_dir, self.group, self.name = cfg, Path(run_dir), group, name
        self.device = torch.device(device) if device else resolve_device(cfg.trainer.device)
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self.fingerprint = config_fingerprint(self.config)
        self.tracker = None
        self.metrics: Dict[str, Any] = {
            "model": OmegaConf.select(cfg, "model.name", throw_on_missing=False),  # checked in run()
            "pooling": cfg.pooling.name,
            "seed": cfg.seed,
            "status": "running",
            "config_hash": self.fingerprint,
        }

    def path(self, name: str) -> Path:
        return self.run_dir / name

    def completed_before(self) -> Optional[Dict[str, Any]]:
        previous = read_json(self.path(METRICS_FILE))
        if previous and previous.get("status") == "completed" and previous.get("config_hash") == self.fingerprint:
            return previous
        return None

    def write_metrics(self, **values) -> None:
        self.metrics.update(values)
        write_json(self.path(METRICS_FILE), self.metrics)

    def load_state(self) -> ResumeState:
        state = ResumeState.load(self.path(STATE_FILE), self.fingerprint) if self.cfg.trainer.resume else None
        return state or ResumeState()

    # ------------------------------------------------------------ the run

    def execute(self) -> float:
        cfg, device = self.cfg, self.device
        reset_compiler()  # nothing compiled by an earlier job of this process counts against this one
        job = prepare(cfg, device)
        model, splits = job.model, job.splits
        train_ds = splits["train"]
        pin = device.type == "cuda"

        def eval_loader(ds):
            return make_loader(
                ds, job.collator, cfg.data.eval_batch_size, num_workers=cfg.trainer.num_workers, pin_memory=pin
            )

        precision = resolve_precision(cfg.trainer.precision, device)
        steps_per_epoch = math.ceil(len(train_ds) / cfg.trainer.batch_size)
        optimizer, scheduler = build_optimizer(model, cfg.optim, steps_per_epoch * cfg.trainer.epochs)
        self.write_metrics(
            params=model.num_parameters(),
            device=str(device),
            precision=precision.name,
            train_samples=len(train_ds),
            valid_samples=len(splits["valid"]),
            test_samples=len(splits["test"]),
        )

        state = self.load_state()
        if state.epoch:
            state.restore(model, optimizer, scheduler, precision.scaler, device)
            log.info(
                "resuming after epoch %d (best valid/acc %.4f at epoch %d)",
                state.epoch,
                state.best["valid/acc"],
                state.best["epoch"],
            )
            self.reconcile_best(state, job)
        # compiled outside the timed epochs, every shape; after the restore, which it must not disturb
        compiled = compile_model(
            model,
            cfg.trainer.compile,
            device,
            precision,
            warmup_batches(job, cfg.trainer.batch_size, cfg.data.eval_batch_size),
            padding=cfg.data.padding,
            backend=cfg.trainer.compile_backend,
        )
        forward = compiled.forward
        self.write_metrics(**compiled.record())

        self.train_epochs(job, state, forward, optimizer, scheduler, precision, eval_loader(splits["valid"]))
        # what training holds on the device (optimizer moments) is no cost of inference: free it first
        state.training = {}
        del optimizer, scheduler
        test, inference = self.test_best(job, state, forward, eval_loader(splits["test"]), precision)
        self.write_metrics(**compiled.record())  # what ran compiled, now that everything has run
        self.finish(state.best, state.history, test, state.global_step, inference)
        return state.best["valid/acc"]

    def train_epochs(
        self, job: Prepared, state: ResumeState, forward, optimizer, scheduler, precision, valid_loader
    ) -> None:
        """The epochs not yet in the state: train, validate, keep the best; stops early where the
        uninterrupted run would."""
        cfg, device = self.cfg, self.device
        patience = cfg.trainer.early_stopping_patience
        for epoch in range(state.epoch + 1, cfg.trainer.epochs + 1):
            if patience is not None and state.stale >= patience:
                break  # a resumed run stops where the uninterrupted one stopped
            loader = make_loader(
                job.splits["train"],
                job.collator,
                cfg.trainer.batch_size,
                shuffle_seed=cfg.seed + epoch,
                group_by_length=cfg.data.group_by_length,
                num_workers=cfg.trainer.num_workers,
                pin_memory=device.type == "cuda",
            )
            started = time.perf_counter()
            trained = train_epoch(
                forward,
                loader,
                optimizer,
                scheduler,
                device,
                epoch=epoch,
                global_step=state.global_step,
                log_every=cfg.trainer.log_every_n_steps,
                on_log=self.tracker.log,
                precision=precision,
            )
            seconds = time.perf_counter() - started
            state.global_step += trained.steps
            valid = evaluate(forward, valid_loader, device, desc=f"epoch {epoch} valid", precision=precision)
            row = {
                "epoch": epoch,
                "train/loss": trained.loss,
                "train/acc": trained.acc,
                "valid/loss": valid["loss"],
                "valid/acc": valid["acc"],
                "seconds": seconds,
                "samples": trained.samples,
                "lr": scheduler.get_last_lr()[0],
            }
            self.end_epoch(state, row, job, optimizer, scheduler, precision)
            if patience is not None and state.stale >= patience:
                log.info("early stop: no better valid/acc for %d epochs", state.stale)

    def test_best(
        self, job: Prepared, state: ResumeState, forward, test_loader, precision
    ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The test split on the best checkpoint (held in the state, else read from best/), and what
        that pass cost: throughput and peak memory."""
        best_weights = state.best_weights
        if best_weights is None:  # the best checkpoint is on disk
            best_weights = Classifier.from_pretrained(self.path(BEST_DIR)).state_dict()
        job.model.load_state_dict(best_weights)
        timed = TimedLoader(test_loader, self.device)
        with peak_memory(self.device) as memory:
            test = evaluate(forward, timed, self.device, desc="test (best checkpoint)", precision=precision)
            timed.stop()
        return test, inference_cost(timed, memory)

    def end_epoch(
        self, state: ResumeState, row: Dict[str, Any], job: Prepared, optimizer, scheduler, precision
    ) -> None:
        """After an epoch: keep it if it is the best so far, write the history, log it, save the
        resumable state, then best/ (a crash between the two leaves the state ahead of best/, which
        the resume repairs from the state's weights; the other order could leave best/ ahead with
        no way back to the state's best weights)."""
        cfg, model = self.cfg, job.model
        state.history.append(row)
        improved = state.best is None or row["valid/acc"] > state.best["valid/acc"]
        if improved:
            state.best, state.stale = dict(row), 0
            if not cfg.trainer.save_best:
                state.best_weights = _cpu_copy(model)
        else:
            state.stale += 1
        write_history(self.path(HISTORY_FILE), state.history)
        self.tracker.log({k: v for k, v in row.items() if k != "samples"}, state.global_step)
        log.info(
            "epoch %d/%d  train/loss %.4f  train/acc %.4f  valid/loss %.4f  valid/acc %.4f  %.1fs%s",
            row["epoch"],
            cfg.trainer.epochs,
            row["train/loss"],
            row["train/acc"],
            row["valid/loss"],
            row["valid/acc"],
            row["seconds"],
            "  (best)" if improved else "",
        )
        state.epoch = row["epoch"]
        state.capture(model, optimizer, scheduler, precision.scaler, self.device)
        state.save(self.path(STATE_FILE), self.fingerprint)
        if improved and cfg.trainer.save_best:
            self.save_best(job, row["epoch"])
        log.info("resumable state saved after epoch %d", state.epoch)  # and best/: all of the epoch is on disk

    def save_best(self, job: Prepared, epoch: int) -> None:
        """best/ with the epoch it holds, so that a resume can check it against the state's best."""
        with atomic_path(self.path(BEST_DIR), is_dir=True) as tmp:
            job.model.save_pretrained(
                tmp,
                job.tokenizer,
                max_len=self.cfg.data.max_len,
                model_name=self.cfg.model.name,
                epoch=epoch,
                label_names=list(job.splits["train"].features["label"].names),
                text_pair_column=self.cfg.data.get("text_pair_column"),  # predict.py asks for pairs where set
            )

    def reconcile_best(self, state: ResumeState, job: Prepared) -> None:
        """After a restore: the state is saved before best/, so a crash in between leaves best/ behind
        the state's best epoch (or missing), never ahead of it. The state's best epoch is then the
        epoch it was saved at, whose weights the model now holds: write them to best/."""
        if not self.cfg.trainer.save_best:
            return
        meta = read_json(self.path(BEST_DIR) / META_FILE)
        if meta is not None and "epoch" not in meta:
            return  # written before best/ recorded its epoch: nothing to check it against
        held, wanted = (meta or {}).get("epoch"), state.best["epoch"]
        if held == wanted:
            return
        if wanted == state.epoch:
            log.info(
                "best/ holds epoch %s, not the best epoch %d (a crash before it was written): writing it", held, wanted
            )
            self.save_best(job, wanted)
        else:
            log.warning(
                "best/ holds epoch %s, not the best epoch %d, and that epoch's weights are gone; "
                "the test pass uses best/ as it is",
                held,
                wanted,
            )

    def finish(
        self,
        best: Dict[str, Any],
        history: List[Dict[str, Any]],
        test: Dict[str, Any],
        step: int,
        inference: Dict[str, Any],
    ) -> None:
        """The test predictions and the final metrics (inference cost included), in the run dir and the tracker."""
        write_predictions(self.path(PREDICTIONS_FILE), prediction_columns(test))
        train_seconds = sum(r["seconds"] for r in history)
        final = {
            "status": "completed",
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "train/acc": best["train/acc"],
            "train/loss": best["train/loss"],
            "valid/acc": best["valid/acc"],
            "valid/loss": best["valid/loss"],
            "test/acc": test["acc"],
            "test/f1": test["f1"],
            "test/macro_f1": test["macro_f1"],
            "test/loss": test["loss"],
            "train_seconds": train_seconds,
            "train_samples_per_s": sum(r["samples"] for r in history) / train_seconds if train_seconds else None,
            **inference,
            "error": None,
        }
        self.tracker.log(
            {k: final[k] for k in ("test/acc", "test/f1", "test/macro_f1", "test/loss") if final[k] is not None}, step
        )
        self.tracker.summary(final)
        self.write_metrics(**final)
        self.path(STATE_FILE).unlink(missing_ok=True)  # a finished run keeps best/, not optimizer states
        log.info(
            "test on the best checkpoint (epoch %d): test/acc %.4f  test/macro_f1 %.4f",
            best["epoch"],
            test["acc"],
            test["macro_f1"],
        )


def prediction_columns(test: Dict[str, Any]) -> Dict[str, Any]:
    """index, label, pred, prob_<i> for every class i, and prob_pos (= prob_1) for two classes, which
    collect and older readers use."""
    probs = test["probs"]
    columns = {"index": test["idx"], "label": test["labels"], "pred": test["preds"]}
    if probs.shape[1] == 2:
        columns["prob_pos"] = probs[:, 1]
    columns.update({f"prob_{i}": probs[:, i] for i in range(probs.shape[1])})
    return columns


def _raise_interrupt(signum, frame):
    raise RunInterrupted(f"received {signal.Signals(signum).name}")


def run(
    cfg: DictConfig,
    run_dir: Path,
    group: str = "",
    name: str = "",
    device: Optional[str] = None,
    gpu_claim: Optional[ContextManager[Optional[str]]] = None,
) -> float:
    """Runs one job into run_dir and returns its best valid/acc (what a sweeper optimises).
    device: where to train, when the caller chose it (else trainer.device decides).
    gpu_claim: entered once the run dir says "running", held until the run ends; the device it
    gives (if any) is where the job trains. A claim that fails is written down like any failure."""
    if not sys.stderr.isatty():  # progress bars only for a person at a terminal, not in logs
        datasets.disable_progress_bars()
        transformers.logging.disable_progress_bar()
    job = Run(cfg, run_dir, group, name or Path(run_dir).name, device)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    previous = job.completed_before() if cfg.trainer.resume else None
    if previous is not None:
        log.info(
            "skipped %s: completed before with the same config (valid/acc %.4f)", job.run_dir, previous["valid/acc"]
        )
        return previous["valid/acc"]
    log.info("run dir %s\nresolved config:\n%s", job.run_dir, OmegaConf.to_yaml(cfg, resolve=True))
    job.write_metrics()
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    exit_code = 1
    held = contextlib.ExitStack()
    try:
        require_model_identity(cfg.model)
        claimed = held.enter_context(gpu_claim) if gpu_claim is not None else None
        if claimed:
            job.device = torch.device(claimed)
        job.tracker = start_tracker(
            cfg.logger,
            job.run_dir,
            job.config,
            group,
            job.name,
            [f"model:{cfg.model.name}", f"pooling:{cfg.pooling.name}"],
        )
        valid_acc = job.execute()
        exit_code = 0
        return valid_acc
    except KeyboardInterrupt as stop:
        job.write_metrics(status="interrupted", error=f"{type(stop).__name__}: {stop}")
        log.warning("interrupted: %s; rerun the same command to resume from the last completed epoch", stop)
        raise
    except InputError as error:
        job.write_metrics(status="failed", error=f"{type(error).__name__}: {error}")
        log.error("run failed: %s", error)  # the user's to fix: one line, no traceback
        raise
    except Exception as error:
        job.write_metrics(status="failed", error=f"{type(error).__name__}: {error}")
        log.error("run failed: %s: %s\n%s", type(error).__name__, error, traceback.format_exc())
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
