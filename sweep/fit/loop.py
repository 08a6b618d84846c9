"""The training loop: the optimizer steps not yet in the resumable state, an epoch's batches at a time
(each step from sweep/fit/step.py), a validation where the schedule says (sweep/fit/schedule.py), each
kept as a history row, a best-checkpoint candidate (sweep/fit/best_checkpoint.py) and a resumable
state, and early stopping."""

import logging
from typing import Any, Dict

from sweep.config.metrics import TASK_METRICS
from sweep.fit.evaluate import evaluate
from sweep.fit.resume import set_rng_state
from sweep.fit.step import Tally, progress, windows
from sweep.launch.interrupts import deferred
from sweep.rundir import STATE_FILE, write_history

log = logging.getLogger(__name__)


class TrainingLoop:
    """trainer: the Trainer (sweep/fit/trainer.py) whose model, optimizer, schedule and state it trains."""

    def __init__(self, trainer):
        self.trainer, self.cfg, self.state, self.schedule = trainer, trainer.cfg, trainer.state, trainer.schedule

    def stopped_early(self) -> bool:
        patience = self.cfg.trainer.early_stopping_patience
        return patience is not None and self.state.stale >= patience

    def run(self) -> None:
        """The optimizer steps not yet in the state, validating where the schedule says; stops early
        where the uninterrupted run would (checked first, so a resumed run stops where it stopped)."""
        cfg, schedule, state = self.cfg, self.schedule, self.state
        valid_loader = self.trainer.loader("valid", cfg.data.eval_batch_size)
        tally = Tally(self.trainer.device, cfg.trainer.log_every_n_steps, self.trainer.job.tracker.log)
        epoch, skip = schedule.resume_point(state.epoch, state.epoch_batches)
        while state.global_step < schedule.total_steps and not self.stopped_early():
            loader = self.trainer.loader(
                "train",
                cfg.trainer.batch_size,
                shuffle_seed=cfg.seed + epoch,
                group_by_length=cfg.data.group_by_length,
                skip_batches=skip,
            )
            self.trainer.compiled.forward.train()
            bar, batches, restore = progress(loader, epoch), skip, skip > 0
            for window in windows(bar, schedule.accum):
                if restore:  # resumed mid-epoch: the loader has drawn its seeds from the global random stream, as the
                    # uninterrupted run did at the epoch's start before it saved the state: the streams as it had them
                    set_rng_state(state.training["rng"], self.trainer.device)
                    restore = False
                result = self.trainer.stepper.step(window)
                state.global_step, batches = state.global_step + 1, batches + len(window)
                logged = tally.add(result, state.global_step, epoch, self.trainer.scheduler.get_last_lr()[0])
                if logged is not None:
                    bar.set_postfix(loss=f"{logged:.4f}")
                if schedule.validates(state.global_step, batches >= schedule.batches_per_epoch):
                    self.validate(tally, epoch, batches, valid_loader)
                    if state.global_step >= schedule.total_steps or self.stopped_early():
                        break
                    self.trainer.compiled.forward.train()
            epoch, skip = epoch + 1, 0

    def validate(self, tally: Tally, epoch: int, batches: int, valid_loader) -> None:
        """Validates, then keeps the row: history, the best checkpoint, the resumable state."""
        trainer, step = self.trainer, self.state.global_step
        seconds, clipping = tally.seconds(), self.cfg.trainer.max_grad_norm is not None
        trained = tally.figures(epoch, step, clipping, trainer.task.has_accuracy)
        row = {"epoch": self.schedule.epoch_at(epoch, batches), "step": step, **trained}
        valid = evaluate(
            trainer.compiled.forward,
            valid_loader,
            trainer.device,
            f"step {step} valid",
            trainer.precision,
            task=trainer.task,
        )
        row.update({f"valid/{name}": valid[name] for name in TASK_METRICS[trainer.task.name]["valid"]})
        row.update({"seconds": seconds, "samples": tally.samples, "lr": trainer.scheduler.get_last_lr()[0]})
        self.keep(row, epoch, batches)
        tally.reset()

    def keep(self, row: Dict[str, Any], epoch: int, batches: int) -> None:
        """Keeps the validation if it is the best so far, writes the history, logs it, saves the
        resumable state, then best/ (a crash between the two leaves the state ahead of best/, which the
        resume repairs from the state's weights; the other order could leave best/ ahead with no way
        back to the state's best weights)."""
        trainer, state, metric = self.trainer, self.state, self.trainer.best.metric
        with deferred():  # a SIGTERM now stops the run once the validation is on disk, not half-way
            state.history.append(row)
            improved = trainer.best.consider(row)
            write_history(trainer.run_dir, state.history)
            trainer.job.tracker.log({k: v for k, v in row.items() if k != "samples"}, state.global_step)
            figures = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if "/" in k and v is not None)
            best = "  (best)" if improved else ""
            log.info(
                "epoch %s/%d step %d  %s  %.1fs%s",
                row["epoch"],
                self.cfg.trainer.epochs,
                row["step"],
                figures,
                row["seconds"],
                best,
            )
            state.epoch, state.epoch_batches = epoch, None if batches >= self.schedule.batches_per_epoch else batches
            state.capture(
                trainer.trained, trainer.optimizer, trainer.scheduler, trainer.precision.scaler, trainer.device
            )
            state.save(trainer.run_dir / STATE_FILE, trainer.job.fingerprint)
            if improved and trainer.best.save:
                trainer.best.write(row)
            # and best/: all of the validation is on disk
            log.info("resumable state saved after epoch %s (step %d)", row["epoch"], state.global_step)
        if self.stopped_early():
            log.info("early stop: no better %s for %d validations", metric, state.stale)
        if trainer.job.trial is not None:  # a tune trial: told after the row is on disk, so a pruned run keeps it
            last = state.global_step >= self.schedule.total_steps
            trainer.job.trial.report(len(state.history), metric, row[metric], last=last)
