"""The training of one prepared job. A Fit owns the model, its compiled forward, the optimizer, the
learning-rate schedule, the precision and the resumable state; it resumes from the state the last
epoch saved, runs the epochs that are left (train, validate, keep the best, save the state and
best/), then tests the best checkpoint and says what that pass cost."""

import logging
import math
import time
from typing import Any, Dict, Optional, Tuple

import torch

from sweep.compilation import Compiled, compile_model
from sweep.cost import TimedLoader, inference_cost, peak_memory
from sweep.data import make_loader
from sweep.features import FeatureHead, Features, as_batch
from sweep.interrupts import deferred
from sweep.loop import build_optimizer, evaluate, resolve_precision, train_epoch
from sweep.model import Classifier
from sweep.prepare import Prepared, warmup_batches
from sweep.resume import ResumeState
from sweep.rundir import BEST_DIR, CLASSIFIER_FILE, STATE_FILE, atomic_path, read_json, write_history

log = logging.getLogger(__name__)


def _trained_copy(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The weights training changes (those that need gradients), copied to the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.named_parameters() if v.requires_grad}


def _load_trained(module: torch.nn.Module, weights: Dict[str, torch.Tensor]) -> None:
    result = module.load_state_dict(weights, strict=False)
    trained = {k for k, v in module.named_parameters() if v.requires_grad}
    if result.unexpected_keys or trained & set(result.missing_keys):
        raise RuntimeError(f"the best weights do not fit the model: {result}")


class Fit:
    """job: the runner's Job (config, run dir, device, tracker, config fingerprint).
    features: method=frozen's cached vectors (sweep/features.py), on which only the head trains."""

    def __init__(self, job, prepared: Prepared, features: Optional[Features] = None):
        self.cfg, self.run_dir, self.device, self.job = job.cfg, job.run_dir, job.device, job
        self.prepared, self.model, self.features = prepared, prepared.model, features
        self.trained = FeatureHead(self.model) if features is not None else self.model  # what the steps update
        self.precision = resolve_precision(self.cfg.trainer.precision, self.device)
        steps_per_epoch = math.ceil(len(prepared.splits["train"]) / self.cfg.trainer.batch_size)
        self.optimizer, self.scheduler = build_optimizer(
            self.trained, self.cfg.optim, steps_per_epoch * self.cfg.trainer.epochs
        )
        # the best epoch's weights in the state, where best/ is not written or where they are small
        # (a probe's head, LoRA's adapters: best/ holds LoRA's merged, which training cannot load back)
        self.best_in_state = not self.cfg.trainer.save_best or self.cfg.method.name != "finetune"
        self.state = ResumeState()
        self.compiled: Compiled = None  # set by compile()

    def description(self) -> Dict[str, Any]:
        """What the job trains, where and on how much data (for metrics.json, before training)."""
        splits = self.prepared.splits
        return {
            "params": self.model.num_parameters(),
            "trainable_params": self.model.trainable_parameters(),
            "device": str(self.device),
            "precision": self.precision.name,
            "train_samples": len(splits["train"]),
            "valid_samples": len(splits["valid"]),
            "test_samples": len(splits["test"]),
            **(self.features.record() if self.features is not None else {}),
        }

    def _loader(self, split: str, batch_size: int, **options):
        if self.features is not None:
            rows = self.features.rows(split, self.cfg.pooling.name)
            return make_loader(rows, as_batch, batch_size, shuffle_seed=options.get("shuffle_seed"))
        return make_loader(
            self.prepared.splits[split],
            self.prepared.collator,
            batch_size,
            num_workers=self.cfg.trainer.num_workers,
            pin_memory=self.device.type == "cuda",
            **options,
        )

    # ------------------------------------------------------------ resume and compile

    def resume(self) -> None:
        """Goes on from the state the last epoch saved, when this config wrote it."""
        saved = ResumeState.load(self.run_dir / STATE_FILE, self.job.fingerprint) if self.cfg.trainer.resume else None
        if saved is None or not saved.epoch:
            return
        self.state = saved
        saved.restore(self.trained, self.optimizer, self.scheduler, self.precision.scaler, self.device)
        best = saved.best
        log.info(
            "resuming after epoch %d (best valid/acc %.4f at epoch %d)", saved.epoch, best["valid/acc"], best["epoch"]
        )
        self.reconcile_best()

    def compile(self) -> Dict[str, Any]:
        """Compiles every shape outside the timed epochs, after the restore (which it must not
        disturb); returns the compile record for metrics.json."""
        cfg = self.cfg
        if self.features is not None:  # a linear layer over vectors: nothing for a compiler to win
            self.compiled = Compiled(self.trained, None, False)
            return self.compiled.record()
        self.compiled = compile_model(
            self.model,
            cfg.trainer.compile,
            self.device,
            self.precision,
            warmup_batches(self.prepared, cfg.trainer.batch_size, cfg.data.eval_batch_size),
            padding=cfg.data.padding,
            backend=cfg.trainer.compile_backend,
        )
        return self.compiled.record()

    # ------------------------------------------------------------ the epochs

    def train_epochs(self) -> None:
        """The epochs not yet in the state; stops early where the uninterrupted run would."""
        patience, valid_loader = (
            self.cfg.trainer.early_stopping_patience,
            self._loader("valid", self.cfg.data.eval_batch_size),
        )
        for epoch in range(self.state.epoch + 1, self.cfg.trainer.epochs + 1):
            if patience is not None and self.state.stale >= patience:
                break  # checked before the epoch, so a resumed run stops where the uninterrupted one stopped
            self.end_epoch(self.train_one_epoch(epoch, valid_loader))
            if patience is not None and self.state.stale >= patience:
                log.info("early stop: no better valid/acc for %d epochs", self.state.stale)

    def train_one_epoch(self, epoch: int, valid_loader) -> Dict[str, Any]:
        """Trains and validates one epoch; returns its history row."""
        cfg, forward = self.cfg, self.compiled.forward
        loader = self._loader(
            "train", cfg.trainer.batch_size, shuffle_seed=cfg.seed + epoch, group_by_length=cfg.data.group_by_length
        )
        started = time.perf_counter()
        trained = train_epoch(
            forward,
            loader,
            self.optimizer,
            self.scheduler,
            self.device,
            epoch=epoch,
            global_step=self.state.global_step,
            log_every=cfg.trainer.log_every_n_steps,
            on_log=self.job.tracker.log,
            precision=self.precision,
        )
        seconds = time.perf_counter() - started
        self.state.global_step += trained.steps
        valid = evaluate(forward, valid_loader, self.device, desc=f"epoch {epoch} valid", precision=self.precision)
        return {
            "epoch": epoch,
            "train/loss": trained.loss,
            "train/acc": trained.acc,
            "valid/loss": valid["loss"],
            "valid/acc": valid["acc"],
            "seconds": seconds,
            "samples": trained.samples,
            "lr": self.scheduler.get_last_lr()[0],
        }

    def end_epoch(self, row: Dict[str, Any]) -> None:
        """Keeps the epoch if it is the best so far, writes the history, logs it, saves the resumable
        state, then best/ (a crash between the two leaves the state ahead of best/, which the resume
        repairs from the state's weights; the other order could leave best/ ahead with no way back
        to the state's best weights)."""
        state, save_best = self.state, self.cfg.trainer.save_best
        with deferred():  # a SIGTERM now stops the run once the epoch is on disk, not half-way
            state.history.append(row)
            improved = state.best is None or row["valid/acc"] > state.best["valid/acc"]
            if improved:
                state.best, state.stale = dict(row), 0
                if self.best_in_state:
                    state.best_weights = _trained_copy(self.trained)
            else:
                state.stale += 1
            write_history(self.run_dir, state.history)
            self.job.tracker.log({k: v for k, v in row.items() if k != "samples"}, state.global_step)
            log.info(
                "epoch %d/%d  train/loss %.4f  train/acc %.4f  valid/loss %.4f  valid/acc %.4f  %.1fs%s",
                row["epoch"],
                self.cfg.trainer.epochs,
                row["train/loss"],
                row["train/acc"],
                row["valid/loss"],
                row["valid/acc"],
                row["seconds"],
                "  (best)" if improved else "",
            )
            state.epoch = row["epoch"]
            state.capture(self.trained, self.optimizer, self.scheduler, self.precision.scaler, self.device)
            state.save(self.run_dir / STATE_FILE, self.job.fingerprint)
            if improved and save_best:
                self.save_best(row["epoch"])
            log.info("resumable state saved after epoch %d", state.epoch)  # and best/: all of the epoch is on disk
        if self.job.trial is not None:  # a tune trial: told after the epoch is on disk, so a pruned run keeps it
            self.job.trial.report(row["epoch"], row["valid/acc"], last=row["epoch"] == self.cfg.trainer.epochs)

    # ------------------------------------------------------------ best/

    def save_best(self, epoch: int) -> None:
        """best/ with the epoch it holds, so that a resume can check it against the state's best."""
        cfg = self.cfg
        with atomic_path(self.run_dir / BEST_DIR, is_dir=True) as tmp:
            self.model.save_pretrained(
                tmp,
                self.prepared.tokenizer,
                max_len=cfg.data.max_len,
                truncation=cfg.data.truncation,  # predict.py keeps the same tokens
                model_name=cfg.model.name,
                epoch=epoch,
                label_names=self.prepared.label_names,
                text_pair_column=cfg.data.get("text_pair_column"),  # predict.py asks for pairs where set
            )

    def reconcile_best(self) -> None:
        """After a restore: the state is saved before best/, so a crash in between leaves best/ behind
        the state's best epoch (or missing), never ahead of it. The state's best epoch is then the
        epoch it was saved at, whose weights the model now holds: write them to best/."""
        if not self.cfg.trainer.save_best:
            return
        meta = read_json(self.run_dir / BEST_DIR / CLASSIFIER_FILE)
        if meta is not None and "epoch" not in meta:
            return  # written before best/ recorded its epoch: nothing to check it against
        held, wanted = (meta or {}).get("epoch"), self.state.best["epoch"]
        if held == wanted:
            return
        if wanted == self.state.epoch:
            log.info(
                "best/ holds epoch %s, not the best epoch %d (a crash before it was written): writing it", held, wanted
            )
            self.save_best(wanted)
        else:
            log.warning(
                "best/ holds epoch %s, not the best epoch %d, and that epoch's weights are gone; "
                "the test pass uses best/ as it is",
                held,
                wanted,
            )

    # ------------------------------------------------------------ the test pass

    def release_training_state(self) -> None:
        """What training holds on the device (optimizer moments) is no cost of inference: free it."""
        self.state.training = {}
        self.optimizer = self.scheduler = None

    def test_best(self) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """The test split on the best checkpoint (held in the state, else read from best/), and what
        that pass cost: throughput and peak memory (on cached features: what encoding the test
        split cost, the frozen model's inference)."""
        if self.state.best_weights is not None:
            _load_trained(self.trained, self.state.best_weights)
        else:  # the best checkpoint is on disk
            self.model.load_state_dict(Classifier.from_pretrained(self.run_dir / BEST_DIR).state_dict())
        self.model.merge_adapter()  # LoRA: tested as saved, the plain model with the adapters folded in
        if self.features is not None:
            test = evaluate(self.trained, self._loader("test", self.cfg.data.eval_batch_size), self.device)
            meta = self.features.meta
            return test, {k: meta[k] for k in ("test_samples_per_s", "peak_memory_mib", "peak_memory_kind")}
        timed = TimedLoader(self._loader("test", self.cfg.data.eval_batch_size), self.device)
        with peak_memory(self.device) as memory:
            test = evaluate(
                self.compiled.forward, timed, self.device, desc="test (best checkpoint)", precision=self.precision
            )
            timed.stop()
        return test, inference_cost(timed, memory)

    def training_results(self) -> Dict[str, Any]:
        """metrics.json's fields of the training: the best epoch's figures and what training cost."""
        best, history = self.state.best, self.state.history
        train_seconds = sum(r["seconds"] for r in history)
        if self.features is not None:  # a probe's training includes the encoding it did (or the reading)
            train_seconds += self.features.seconds
        return {
            "best_epoch": best["epoch"],
            "epochs_run": len(history),
            "train/acc": best["train/acc"],
            "train/loss": best["train/loss"],
            "valid/acc": best["valid/acc"],
            "valid/loss": best["valid/loss"],
            "train_seconds": train_seconds,
            "train_samples_per_s": sum(r["samples"] for r in history) / train_seconds if train_seconds else None,
            "error": None,
        }

    def results(self, test: Dict[str, Any], inference: Dict[str, Any]) -> Dict[str, Any]:
        """The final metrics.json fields of a completed run."""
        tested = {
            "test/acc": test["acc"],
            "test/f1": test["f1"],
            "test/macro_f1": test["macro_f1"],
            "test/loss": test["loss"],
        }
        return {**self.training_results(), **tested, **inference}
