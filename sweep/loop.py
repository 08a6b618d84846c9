"""The training step (backward, optimizer step), evaluation, and the optimizer. Importable with torch and
transformers alone (the benchmark uses train_step on machines without hydra or datasets)."""

import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from sweep.errors import InputError
from sweep.layer_decay import layer_scales
from sweep.schema import PRECISIONS
from sweep.tasks import SingleLabel

MODEL_INPUT_KEYS_EXCLUDED = ("labels", "idx")
SINGLE_LABEL = SingleLabel()  # the task of a caller that names none (the benchmark, the seed recipe)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the run stops instead of training a model of garbage."""


def resolve_device(name: str) -> torch.device:
    """trainer.device as a torch device; a GPU this machine does not have is an InputError saying what it has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        if not count:
            raise InputError(f"trainer.device={name!r}: this machine has no CUDA GPU; use auto or cpu")
        names = ", ".join(f"cuda:{i}" for i in range(count))
        raise InputError(
            f"trainer.device={name!r}: this machine has {count} CUDA GPU(s), {names}; use one, cuda or auto"
        )
    return device


def build_optimizer(model: nn.Module, optim_cfg, total_steps: int):
    """Adam/AdamW with no decay on biases and norms, each layer at its rate under
    optim.layer_decay (sweep/layer_decay.py); a transformers schedule by name."""
    layer_decay = optim_cfg.layer_decay
    trains_encoder = hasattr(model, "encoder") and any(p.requires_grad for p in model.encoder.parameters())
    scales = layer_scales(model, layer_decay) if layer_decay != 1.0 and trains_encoder else {}
    grouped: Dict[tuple, list] = {}  # (decays, lr scale) -> parameters, in the model's order
    for name, param in model.named_parameters():
        if param.requires_grad:
            grouped.setdefault((param.ndim >= 2, scales.get(name, 1.0)), []).append(param)
    for decays in (True, False):  # the two groups of an optimizer without layer decay, even when empty
        grouped.setdefault((decays, 1.0), [])
    groups = [
        {"params": params, "weight_decay": optim_cfg.weight_decay if decays else 0.0, "lr": optim_cfg.lr * scale}
        for (decays, scale), params in sorted(grouped.items(), key=lambda item: (not item[0][0], -item[0][1]))
    ]
    kind = torch.optim.AdamW if optim_cfg.name.startswith("adamw") else torch.optim.Adam
    device_type = next(model.parameters()).device.type
    # fused kernels on GPU, foreach (multi-tensor) elsewhere: one launch for all params
    impl = {"fused": True} if device_type == "cuda" else {"foreach": True}
    optimizer = kind(groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps, **impl)
    warmup = int(math.ceil(optim_cfg.warmup_ratio * total_steps))
    scheduler = get_scheduler(optim_cfg.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def to_device(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_inputs(batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k not in MODEL_INPUT_KEYS_EXCLUDED}


@dataclass
class Precision:
    """Mixed precision of the forward pass: autocast to `dtype` (None = plain fp32), with a grad
    scaler for fp16, whose small range would underflow gradients."""

    name: str
    device_type: str
    dtype: Optional[torch.dtype] = None
    scaler: Optional[torch.amp.GradScaler] = None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else nullcontext()


def has_native_bf16(device: torch.device) -> bool:
    """bf16 tensor cores: compute capability 8.0 (Ampere) and newer, asked of the job's own GPU.
    torch.cuda.is_bf16_supported() also says yes where bf16 is only emulated (V100, T4), and asks GPU 0."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """auto: bf16 on a GPU with native bf16, fp16 with a grad scaler on older GPUs, fp32 on CPU.
    fp32 on a GPU uses TF32 matmuls."""
    if name not in PRECISIONS:
        raise InputError(f"trainer.precision={name!r} is not a precision; use one of {list(PRECISIONS)}")
    if name == "auto":
        name = ("bf16" if has_native_bf16(device) else "fp16") if device.type == "cuda" else "fp32"
    if name == "fp32":
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return Precision("fp32", device.type)
    if name == "bf16":
        return Precision("bf16", device.type, torch.bfloat16)
    return Precision("fp16", device.type, torch.float16, torch.amp.GradScaler(device.type))


def mark_cuda_graph_step() -> None:
    """Tells CUDA graphs (compile mode reduce-overhead) that a new step begins: the last step's
    outputs are done. Only a process whose compiler loaded inductor's graph trees can hold graphs;
    anywhere else the call would import inductor, 1.1 s of CPU at each job's start, for nothing."""
    if "torch._inductor.cudagraph_trees" in sys.modules:
        torch.compiler.cudagraph_mark_step_begin()


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
    step's loss (None: the whole step); task: sweep/tasks.py's (None: single_label). Returns the
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


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    desc: str = "eval",
    precision: Optional[Precision] = None,
    task=None,
) -> Dict[str, object]:
    """The loss and the task's metrics (sweep/tasks.py; single_label: accuracy, macro-F1 and the F1 of
    the positive class for two classes), with the per-example labels, predictions (and probabilities)."""
    task = task or SINGLE_LABEL
    model.eval()
    losses, labels, outputs, idx = [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
        mark_cuda_graph_step()
        batch = to_device(batch, device)
        with precision.autocast() if precision else nullcontext():
            logits = model(**model_inputs(batch))
        logits = logits.float()
        losses.append(task.loss(logits, batch["labels"], reduction="sum"))
        labels.append(batch["labels"])
        outputs.append(task.outputs(logits))
        idx.append(batch["idx"])
    labels_t = torch.cat(labels).cpu()
    out = {key: torch.cat([o[key] for o in outputs]).cpu() for key in outputs[0]}
    return {
        "loss": float(torch.stack(losses).sum()) / len(labels_t),
        **task.metrics(labels_t, out),
        "labels": labels_t.numpy(),
        **{key: value.numpy() for key, value in out.items()},
        "idx": torch.cat(idx).cpu().numpy(),
    }
