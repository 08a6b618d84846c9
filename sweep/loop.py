"""The training step, one epoch, evaluation, and the optimizer. Importable with torch and
transformers alone (the benchmark uses train_step on machines without hydra or datasets)."""

import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import get_scheduler

from sweep.errors import InputError
from sweep.layer_decay import layer_scales
from sweep.schema import PRECISIONS

MODEL_INPUT_KEYS_EXCLUDED = ("labels", "idx")


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


def train_step(
    model: nn.Module,
    inputs: Dict[str, torch.Tensor],
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    precision: Optional[Precision] = None,
):
    """Forward, loss, backward, optimizer step. Returns the loss and the number of correct
    predictions as device tensors: nothing here waits for the device."""
    mark_cuda_graph_step()
    with precision.autocast() if precision else nullcontext():
        logits = model(**inputs)
    loss = F.cross_entropy(logits.float(), labels)
    scaler = precision.scaler if precision else None
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), (logits.argmax(dim=-1) == labels).sum()


@dataclass
class EpochResult:
    loss: float
    acc: float
    samples: int
    steps: int


def train_epoch(
    model: nn.Module,
    loader,
    optimizer,
    scheduler,
    device: torch.device,
    *,
    epoch: int,
    global_step: int,
    log_every: int,
    on_log: Callable[[Dict[str, float], int], None],
    precision: Optional[Precision] = None,
) -> EpochResult:
    """One pass over the loader. Loss and accuracy accumulate on the device; the host syncs only
    every `log_every` steps (to log the running loss and check it is finite)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    window_loss, window_steps, samples, steps = torch.zeros((), device=device), 0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, dynamic_ncols=True, disable=None)
    for batch in bar:
        batch = to_device(batch, device)
        labels = batch["labels"]
        loss, hits = train_step(model, model_inputs(batch), labels, optimizer, scheduler, precision)
        size = labels.shape[0]
        loss_sum += loss * size
        correct += hits
        window_loss += loss
        samples, steps, window_steps = samples + size, steps + 1, window_steps + 1
        if (global_step + steps) % log_every == 0:
            value = (window_loss / window_steps).item()
            check_finite(value, epoch, global_step + steps)
            on_log(
                {"train/loss_step": value, "train/lr": scheduler.get_last_lr()[0], "epoch": epoch}, global_step + steps
            )
            bar.set_postfix(loss=f"{value:.4f}")
            window_loss.zero_()
            window_steps = 0
    mean_loss = (loss_sum / max(samples, 1)).item()
    check_finite(mean_loss, epoch, global_step + steps)
    return EpochResult(loss=mean_loss, acc=correct.item() / max(samples, 1), samples=samples, steps=steps)


def check_finite(loss: float, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"train loss is {loss} at epoch {epoch}, step {step}; lower optim.lr or check the data"
        )


def class_f1(labels: torch.Tensor, preds: torch.Tensor, cls: int) -> float:
    """F1 of one class against the rest (0 when the class is neither predicted nor present)."""
    tp = int(((preds == cls) & (labels == cls)).sum())
    fp = int(((preds == cls) & (labels != cls)).sum())
    fn = int(((preds != cls) & (labels == cls)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def macro_f1(labels: torch.Tensor, preds: torch.Tensor, f1s: List[float]) -> float:
    """Mean F1 over the classes that occur in the labels or predictions (sklearn's macro average over
    its labels); a class absent from both, e.g. from a capped split, would only add an arbitrary 0."""
    seen = set(labels.tolist()) | set(preds.tolist())
    return sum(f1s[c] for c in seen) / len(seen)


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader, device: torch.device, desc: str = "eval", precision: Optional[Precision] = None
) -> Dict[str, object]:
    """Loss, accuracy, macro-F1 (and F1 of the positive class for two classes), per-example predictions
    and class probabilities."""
    model.eval()
    losses, labels, preds, probs, idx = [], [], [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None):
        mark_cuda_graph_step()
        batch = to_device(batch, device)
        with precision.autocast() if precision else nullcontext():
            logits = model(**model_inputs(batch))
        logits = logits.float()
        losses.append(F.cross_entropy(logits, batch["labels"], reduction="sum"))
        labels.append(batch["labels"])
        preds.append(logits.argmax(dim=-1))
        probs.append(logits.softmax(dim=-1))
        idx.append(batch["idx"])
    labels_t, preds_t, probs_t = torch.cat(labels).cpu(), torch.cat(preds).cpu(), torch.cat(probs).cpu()
    n, n_classes = len(labels_t), probs_t.shape[1]
    f1s = [class_f1(labels_t, preds_t, c) for c in range(n_classes)]
    return {
        "loss": float(torch.stack(losses).sum()) / n,
        "acc": int((preds_t == labels_t).sum()) / n,  # exact, not a float32 mean
        "f1": f1s[1] if n_classes == 2 else None,  # binary F1 of the positive class; no single one for more classes
        "macro_f1": macro_f1(labels_t, preds_t, f1s),
        "labels": labels_t.numpy(),
        "preds": preds_t.numpy(),
        "probs": probs_t.numpy(),
        "idx": torch.cat(idx).cpu().numpy(),
    }
