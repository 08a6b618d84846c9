"""The steps of one run between validations: the optimizer steps not yet in the resumable state
(sweep/stepper.py), a validation where the schedule says (sweep/schedule.py), each kept as a history
row, a best-checkpoint candidate (sweep/best.py) and a resumable state, and early stopping."""

import logging
from typing import Any, Dict

from sweep.interrupts import deferred
from sweep.loop import evaluate
from sweep.resume import set_rng_state
from sweep.rundir import STATE_FILE, write_history
from sweep.selection import TASK_METRICS
from sweep.stepper import Tally, progress, windows

log = logging.getLogger(__name__)


class TrainingLoop:
    """fit: the Fit (sweep/fit.py) whose model, optimizer, schedule and state it trains."""

    def __init__(self, fit):
        self.fit, self.cfg, self.state, self.schedule = fit, fit.cfg, fit.state, fit.schedule

    def stopped_early(self) -> bool:
        patience = self.cfg.trainer.early_stopping_patience
        return patience is not None and self.state.stale >= patience

    def run(self) -> None:
        """The optimizer steps not yet in the state, validating where the schedule says; stops early
        where the uninterrupted run would (checked first, so a resumed run stops where it stopped)."""
        cfg, schedule, state = self.cfg, self.schedule, self.state
        valid_loader = self.fit._loader("valid", cfg.data.eval_batch_size)
        tally = Tally(self.fit.device, cfg.trainer.log_every_n_steps, self.fit.job.tracker.log)
        epoch, skip = schedule.resume_point(state.epoch, state.epoch_batches)
        while state.global_step < schedule.total_steps and not self.stopped_early():
            loader = self.fit._loader(
                "train",
                cfg.trainer.batch_size,
                shuffle_seed=cfg.seed + epoch,
                group_by_length=cfg.data.group_by_length,
                skip_batches=skip,
            )
            self.fit.compiled.forward.train()
            bar, batches, restore = progress(loader, epoch), skip, skip > 0
            for window in windows(bar, schedule.accum):
                if restore:  # resumed mid-epoch: the loader has drawn its seeds from the global random stream, as the
                    # uninterrupted run did at the epoch's start before it saved the state: the streams as it had them
                    set_rng_state(state.training["rng"], self.fit.device)
                    restore = False
                result = self.fit.stepper.step(window)
                state.global_step, batches = state.global_step + 1, batches + len(window)
                logged = tally.add(result, state.global_step, epoch, self.fit.scheduler.get_last_lr()[0])
                if logged is not None:
                    bar.set_postfix(loss=f"{logged:.4f}")
                if schedule.validates(state.global_step, batches >= schedule.batches_per_epoch):
                    self.validate(tally, epoch, batches, valid_loader)
                    if state.global_step >= schedule.total_steps or self.stopped_early():
                        break
                    self.fit.compiled.forward.train()
            epoch, skip = epoch + 1, 0

    def validate(self, tally: Tally, epoch: int, batches: int, valid_loader) -> None:
        """Validates, then keeps the row: history, the best checkpoint, the resumable state."""
        fit, step = self.fit, self.state.global_step
        seconds, clipping = tally.seconds(), self.cfg.trainer.max_grad_norm is not None
        trained = tally.figures(epoch, step, clipping, fit.task.has_accuracy)
        row = {"epoch": self.schedule.epoch_at(epoch, batches), "step": step, **trained}
        valid = evaluate(
            fit.compiled.forward, valid_loader, fit.device, f"step {step} valid", fit.precision, task=fit.task
        )
        row.update({f"valid/{name}": valid[name] for name in TASK_METRICS[fit.task.name]["valid"]})
        row.update({"seconds": seconds, "samples": tally.samples, "lr": fit.scheduler.get_last_lr()[0]})
        self.keep(row, epoch, batches)
        tally.reset()

    def keep(self, row: Dict[str, Any], epoch: int, batches: int) -> None:
        """Keeps the validation if it is the best so far, writes the history, logs it, saves the
        resumable state, then best/ (a crash between the two leaves the state ahead of best/, which the
        resume repairs from the state's weights; the other order could leave best/ ahead with no way
        back to the state's best weights)."""
        fit, state, metric = self.fit, self.state, self.fit.best.metric
        with deferred():  # a SIGTERM now stops the run once the validation is on disk, not half-way
            state.history.append(row)
            improved = fit.best.consider(row)
            write_history(fit.run_dir, state.history)
            fit.job.tracker.log({k: v for k, v in row.items() if k != "samples"}, state.global_step)
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
            state.capture(fit.trained, fit.optimizer, fit.scheduler, fit.precision.scaler, fit.device)
            state.save(fit.run_dir / STATE_FILE, fit.job.fingerprint)
            if improved and fit.best.save:
                fit.best.write(row)
            # and best/: all of the validation is on disk
            log.info("resumable state saved after epoch %s (step %d)", row["epoch"], state.global_step)
        if self.stopped_early():
            log.info("early stop: no better %s for %d validations", metric, state.stale)
        if fit.job.trial is not None:  # a tune trial: told after the row is on disk, so a pruned run keeps it
            last = state.global_step >= self.schedule.total_steps
            fit.job.trial.report(len(state.history), metric, row[metric], last=last)
