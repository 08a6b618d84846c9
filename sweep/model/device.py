"""Where a model runs and in what precision: trainer.device and trainer.precision resolved (autocast,
fp16's grad scaler, TF32), batches moved to the device, and CUDA graphs told a step begins.
Importable with torch alone (the benchmark runs on machines without hydra or datasets)."""

import sys
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from sweep.config.schema import PRECISIONS
from sweep.errors import InputError

MODEL_INPUT_KEYS_EXCLUDED = ("labels", "idx")


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
