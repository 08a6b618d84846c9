"""When a run validates and when it stops training: after every epoch (the seed's) or every
trainer.eval_every_steps optimizer steps (and after the last), for trainer.epochs epochs or exactly
trainer.max_steps optimizer steps. Steps are optimizer steps: ceil(batches / grad_accum_steps) an
epoch, the last window of an epoch shorter where the batches do not divide."""

import math
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Schedule:
    batches_per_epoch: int  # micro-batches of trainer.batch_size
    accum: int = 1  # trainer.grad_accum_steps
    epochs: int = 1  # trainer.epochs (ignored where max_steps is set)
    eval_every: Optional[int] = None  # trainer.eval_every_steps
    max_steps: Optional[int] = None  # trainer.max_steps

    @classmethod
    def of(cls, trainer, rows: int) -> "Schedule":
        batches = math.ceil(rows / trainer.batch_size)
        return cls(batches, trainer.grad_accum_steps, trainer.epochs, trainer.eval_every_steps, trainer.max_steps)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch / self.accum)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (the learning-rate schedule's length)."""
        return self.max_steps if self.max_steps is not None else self.steps_per_epoch * self.epochs

    def validates(self, step: int, epoch_done: bool) -> bool:
        """Whether a validation follows this optimizer step (the last step always has one)."""
        if step >= self.total_steps:
            return True
        return epoch_done if self.eval_every is None else step % self.eval_every == 0

    def epoch_at(self, epoch: int, batches: int) -> float:
        """The epoch as a number: the whole epoch at its end, else the fraction of it trained (6 decimals)."""
        return epoch if batches >= self.batches_per_epoch else round(epoch - 1 + batches / self.batches_per_epoch, 6)

    def resume_point(self, epoch: int, batches: Optional[int]) -> Tuple[int, int]:
        """(epoch, batches of it to skip) where training goes on after a validation at `batches`
        micro-batches into `epoch` (None or all of them: the epoch was done; epoch 0: nothing ran)."""
        if epoch == 0 or batches is None or batches >= self.batches_per_epoch:
            return epoch + 1, 0
        return epoch, batches
