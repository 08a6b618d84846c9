"""One optimizer step from the batches of an epoch: each micro-batch's forward, loss and backward,
gradient accumulation (a window of up to trainer.grad_accum_steps micro-batches, the loss shared so that
the update is that of one batch of all their rows), clipping (trainer.max_grad_norm), the update and the
schedule's step; and the running figures of the steps since the last validation and the last log line.
Nothing here waits for the device except at a log line and at a validation."""

import math
import time
from contextlib import nullcontext
from typing import Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional

import torch
from torch import nn
from tqdm.auto import tqdm

from sweep.model.device import Precision, mark_cuda_graph_step, model_inputs, to_device
from sweep.model.tasks import SINGLE_LABEL


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the run stops instead of training a model of garbage."""


def backward(
    model: nn.Module,
    inputs: Dict[str, torch.Tensor],
    labels: torch.Tensor,
    precision: Optional[Precision] = None,
    weight: Optional[torch.Tensor] = None,
    share=None,
    task=None,
):
    """Forward, loss and backward of one (micro-)batch: gradients add up until optimizer_step.
    weight: per-class weights of the cross-entropy; share: this batch's part of an accumulated
    step's loss (None: the whole step); task: sweep/model/tasks.py's (None: single_label). Returns the
    batch's mean loss and its number of correct rows as device tensors: nothing here waits for the device."""
    task = task or SINGLE_LABEL
    mark_cuda_graph_step()
    with precision.autocast() if precision else nullcontext():
        logits = model(**inputs)
    loss = task.loss(logits, labels, weight)
    scaled = loss if share is None else loss * share
    scaler = precision.scaler if precision else None
    (scaler.scale(scaled) if scaler is not None else scaled).backward()
    return loss.detach(), task.hits(logits, labels)


def optimizer_step(optimizer, scheduler=None, precision: Optional[Precision] = None, max_grad_norm=None):
    """One update from the gradients backward() left, then the schedule's step. max_grad_norm clips
    their global L2 norm first (under fp16's scaler, the unscaled gradients); returns that norm
    before clipping as a device tensor (None without clipping)."""
    scaler = precision.scaler if precision else None
    norm = None
    if max_grad_norm is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return norm


def train_step(
    model: nn.Module,
    inputs: Dict[str, torch.Tensor],
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    precision: Optional[Precision] = None,
):
    """One batch, one optimizer step (the benchmark's unit). Returns the loss and the number of
    correct predictions as device tensors."""
    loss, hits = backward(model, inputs, labels, precision)
    optimizer_step(optimizer, scheduler, precision)
    return loss, hits


def windows(loader: Iterable, size: int) -> Iterator[List]:
    """The loader's batches in groups of `size`; the last group of the epoch may be shorter."""
    window = []
    for batch in loader:
        window.append(batch)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


class StepResult(NamedTuple):
    loss_sum: torch.Tensor  # the rows' losses summed
    loss: torch.Tensor  # the step's mean loss
    correct: torch.Tensor  # correct predictions
    rows: int
    norm: Optional[torch.Tensor]  # the gradients' norm before clipping (None: no clipping)


class Stepper:
    """One optimizer step from a window of micro-batches: each one's loss weighs by its share of the
    window's rows (of their class weights, where classes are weighed), so K micro-batches of b rows
    update the weights as one batch of K x b rows would."""

    def __init__(
        self, model, optimizer, scheduler, precision, device, max_grad_norm=None, class_weights=None, task=None
    ):
        self.model, self.optimizer, self.scheduler, self.precision = model, optimizer, scheduler, precision
        self.device, self.max_grad_norm, self.class_weights, self.task = device, max_grad_norm, class_weights, task

    def _shares(self, labels: List[torch.Tensor]) -> List:
        if len(labels) == 1:
            return [None]  # the whole step: its loss as it is
        if self.class_weights is None:
            rows = sum(len(y) for y in labels)
            return [len(y) / rows for y in labels]
        weights = [self.class_weights[y].sum() for y in labels]  # the weighted mean's denominators
        total = torch.stack(weights).sum()
        return [w / total for w in weights]

    def step(self, window: List[Dict[str, torch.Tensor]]) -> StepResult:
        batches = [to_device(batch, self.device) for batch in window]
        shares = self._shares([batch["labels"] for batch in batches])
        loss_sum, correct, rows, loss = None, None, 0, None
        for batch, share in zip(batches, shares):
            labels = batch["labels"]
            loss, hits = backward(
                self.model, model_inputs(batch), labels, self.precision, self.class_weights, share, self.task
            )
            loss_sum = loss * labels.shape[0] if loss_sum is None else loss_sum + loss * labels.shape[0]
            correct = hits if correct is None else correct + hits
            rows += labels.shape[0]
        norm = optimizer_step(self.optimizer, self.scheduler, self.precision, self.max_grad_norm)
        return StepResult(loss_sum, loss if len(batches) == 1 else loss_sum / rows, correct, rows, norm)


class Tally:
    """The training figures since the last validation, and since the last log line, on the device."""

    def __init__(self, device: torch.device, log_every: int, on_log: Callable[[Dict[str, float], int], None]):
        self.device, self.log_every, self.on_log = device, log_every, on_log
        self.reset()

    def reset(self) -> None:
        zero = torch.zeros((), device=self.device)
        self.loss_sum, self.correct, self.samples = zero.clone(), zero.clone().long(), 0
        self.norm_sum, self.norm_steps = zero.clone(), zero.clone().long()
        self.log_loss, self.log_steps = zero.clone(), 0
        self.started = time.perf_counter()

    def add(self, result: StepResult, step: int, epoch: int, lr: float) -> Optional[float]:
        """Counts one optimizer step; returns the logged loss at a log line (else None)."""
        self.loss_sum += result.loss_sum
        self.correct += result.correct
        self.samples, self.log_steps = self.samples + result.rows, self.log_steps + 1
        self.log_loss += result.loss
        norm = result.norm
        if norm is not None:  # a step fp16's scaler skipped has an inf norm: no figure of the gradients
            finite = torch.isfinite(norm)
            self.norm_sum += torch.where(finite, norm, torch.zeros_like(norm))
            self.norm_steps += finite.long()
        if step % self.log_every != 0:
            return None
        value = (self.log_loss / self.log_steps).item()
        check_finite(value, epoch, step)
        logged = {"train/loss_step": value, "train/lr": lr, "epoch": epoch}
        if norm is not None:
            logged["train/grad_norm"] = float(norm)
        self.on_log(logged, step)
        self.log_loss.zero_()
        self.log_steps = 0
        return value

    def seconds(self) -> float:
        """Seconds since the last reset: the steps' time, the validations left out."""
        return time.perf_counter() - self.started

    def figures(self, epoch: int, step: int, clipping: bool, accuracy: bool = True) -> Dict[str, float]:
        """train/loss, train/acc (where the task has an accuracy; and the mean train/grad_norm under
        clipping) since the last reset."""
        mean_loss = (self.loss_sum / max(self.samples, 1)).item()
        check_finite(mean_loss, epoch, step)
        figures = {"train/loss": mean_loss}
        if accuracy:
            figures["train/acc"] = self.correct.item() / max(self.samples, 1)
        if clipping:
            figures["train/grad_norm"] = (self.norm_sum / self.norm_steps.clamp(min=1)).item()
        return figures


def check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"train loss is {loss} at epoch {epoch}, step {step}; lower optim.lr or check the data"
        )


def progress(loader: Iterable, epoch: int):
    """A progress bar over the epoch's batches, for a person at a terminal (disable=None: not in logs).
    tqdm.auto's bar starts an iterator of the loader at once and another when iterated: each draws a
    seed from the global random stream, which the dropout masks then follow (the seed recipe's numbers)."""
    return tqdm(loader, desc=f"epoch {epoch} train", leave=False, dynamic_ncols=True, disable=None)
