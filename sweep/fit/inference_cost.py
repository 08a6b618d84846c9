"""What a trained model costs to run: test-set inference throughput and peak memory, measured
around the test pass without touching the evaluation loop (no host sync per batch)."""

import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
RESET_PEAK_RSS = "5"  # Linux (>= 4.0): writing 5 to clear_refs resets the peak RSS (VmHWM)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedLoader:
    """Wraps an eval loader: the clock starts once the first (warm-up) batch has run on the device
    and stops in `stop()`, so the span holds every later batch, their loading included. The
    device waits twice (start, stop), never per batch."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device
        self.started: Optional[float] = None
        self.samples = 0  # after the warm-up batch
        self.seconds: Optional[float] = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        batches = iter(self.loader)
        warm_up = next(batches, None)
        if warm_up is None:
            return
        yield warm_up
        # the loop asks for the next batch once the warm-up batch's work is queued: let it finish
        synchronize(self.device)
        self.started = time.perf_counter()
        for batch in batches:
            self.samples += len(batch["labels"])
            yield batch

    def stop(self) -> None:
        synchronize(self.device)
        if self.started is not None:
            self.seconds = time.perf_counter() - self.started

    def samples_per_s(self) -> Optional[float]:
        """None when there was only one batch (nothing after the warm-up to time)."""
        return self.samples / self.seconds if self.seconds and self.samples else None


@dataclass
class PeakMemory:
    mib: Optional[float] = None
    kind: Optional[str] = None


def _reset_host_peak() -> bool:
    try:
        PROC_CLEAR_REFS.write_text(RESET_PEAK_RSS)
        return True
    except OSError:  # not Linux, or a kernel/sandbox that does not allow it
        return False


def _host_peak_mib(reset: bool) -> PeakMemory:
    """VmHWM after a reset is the pass's own peak; without one, the process's lifetime peak (which
    training may have set), named as such."""
    if reset:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return PeakMemory(int(line.split()[1]) / 1024, "host_rss")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return PeakMemory(peak / (2**20 if sys.platform == "darwin" else 1024), "host_rss_process_lifetime")


@contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """The peak memory of the block: tensors allocated on the GPU (weights included) on a GPU,
    the process's resident set size on CPU (data-loader worker processes not included)."""
    result = PeakMemory()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        synchronize(device)
        result.mib, result.kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_allocated"
    else:
        reset = _reset_host_peak()
        yield result
        peak = _host_peak_mib(reset)
        result.mib, result.kind = peak.mib, peak.kind


def inference_cost(timed: TimedLoader, memory: PeakMemory) -> Dict[str, Any]:
    """The metrics.json fields."""
    return {
        "test_samples_per_s": timed.samples_per_s(),
        "peak_memory_mib": memory.mib,
        "peak_memory_kind": memory.kind,
    }
