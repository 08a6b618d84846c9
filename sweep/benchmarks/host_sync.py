"""Counting host syncs: each read of a device tensor's value by the host, which on a GPU stalls the
queue (the host waits for the device, then the device for the host). The train-step benchmark and
the tests use it to show that the project's train step reads nothing."""

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostSyncCounter(TorchDispatchMode):
    """Records each read of a tensor's value by the host: `aten._local_scalar_dense`, which every
    .item(), bool(), int() or float() of a tensor goes through; on a GPU each one waits for all the
    work queued before it. Optimizer step counters are left out: on a GPU they stay on the host
    (fused optimizers keep them on the device and never read them), so reading them waits for
    nothing; on a CPU run they are the only such reads that a GPU run would not have. Counts on a
    CPU too, so tests catch a sync without a GPU. Not under torch.compile: traced code skips the checks."""

    def __init__(self, device, optimizers=()):
        super().__init__()
        self.device_type = torch.device(device).type
        self.optimizers = list(optimizers)
        self.stacks = []  # one formatted Python stack per sync, to show where it happened

    def _is_step_counter(self, tensor: torch.Tensor) -> bool:
        return any(
            state.get("step") is not None and state["step"].data_ptr() == tensor.data_ptr()
            for optimizer in self.optimizers
            for state in optimizer.state.values()
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            tensor = args[0]
            if tensor.device.type == self.device_type and not self._is_step_counter(tensor):
                self.stacks.append("".join(traceback.format_stack()[:-1]))
        return func(*args, **(kwargs or {}))

    @property
    def count(self) -> int:
        return len(self.stacks)


def count_host_syncs(step, device, optimizers=()) -> HostSyncCounter:
    """Runs `step()` once under a HostSyncCounter; returns the counter (count and stacks)."""
    with HostSyncCounter(device, optimizers) as counter:
        step()
    return counter
