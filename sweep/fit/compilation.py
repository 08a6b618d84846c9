"""torch.compile for one job: decide whether and how, compile every input shape the run will use
before the timed epochs, fall back to eager where compile=auto and the compiler fails, and say
truthfully afterwards what ran compiled (dynamo's own counters).

Importable with torch and transformers alone (the benchmark uses it on machines without hydra)."""

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch._dynamo
from torch import nn

from sweep.errors import CompileError, InputError
from sweep.model.device import Precision, mark_cuda_graph_step, model_inputs, to_device

log = logging.getLogger(__name__)

_SUPPRESS_ERRORS_DEFAULT = torch._dynamo.config.suppress_errors  # as the user's environment set it

COMPILE_SETTINGS = {"false": None, "true": "default", "reduce-overhead": "reduce-overhead"}


def compiles_by_default(device: torch.device) -> bool:
    """compile=auto compiles on a GPU only: on CPU, compilation costs more than it saves here."""
    return device.type == "cuda"


def compile_mode(setting, device: torch.device, padding: str = "max_length") -> Tuple[Optional[str], bool]:
    """(torch.compile mode or None for eager, whether a compile failure may fall back to eager)."""
    setting = str(setting).lower()
    explicit = setting != "auto"
    if not explicit:
        setting = "true" if compiles_by_default(device) else "false"
    if setting not in COMPILE_SETTINGS:
        raise InputError(
            f"trainer.compile={setting!r} is not a compile setting; use auto, true, false or reduce-overhead"
        )
    mode = COMPILE_SETTINGS[setting]
    if mode == "reduce-overhead" and padding == "dynamic":
        # CUDA graphs are recorded once per input shape: dynamic padding has one shape per length
        raise InputError(
            "trainer.compile=reduce-overhead records a CUDA graph for every input shape, and "
            "data.padding=dynamic makes one per length; use data.padding=max_length with it, "
            "or trainer.compile=true with dynamic padding"
        )
    return mode, not explicit


def dynamo_counts() -> Dict[str, int]:
    """Frames dynamo tried to compile, those it compiled (the others ran eagerly), and graph breaks
    (each splits the forward into more graphs: slower, and fatal to CUDA graphs at inference)."""
    from torch._dynamo.utils import counters

    return {
        "frames": int(counters["frames"]["total"]),
        "compiled": int(counters["frames"]["ok"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
    }


def reset_compiler() -> None:
    """A clean compiler state for each job: jobs of one process (the basic launcher, reused joblib
    workers) would otherwise pile their cache entries on Classifier.forward until dynamo's
    recompile limit makes later jobs run eagerly."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch._dynamo.config.suppress_errors = _SUPPRESS_ERRORS_DEFAULT


@dataclass
class WarmupBatch:
    """One input shape the run will use: a train step (forward + backward) or an evaluation."""

    batch: Dict[str, torch.Tensor]
    train: bool


@dataclass
class Compiled:
    """What the run calls, and the record of how it was compiled."""

    forward: nn.Module
    mode: Optional[str]
    fallback_allowed: bool
    seconds: float = 0.0
    error: Optional[str] = None
    after_warmup: Optional[Dict[str, int]] = None

    @property
    def compiled(self) -> bool:
        return self.mode is not None and self.error is None

    def record(self) -> Dict[str, object]:
        """For metrics.json: compiled is true only if nothing ran eagerly after the warm-up."""
        record = {
            "compile_mode": self.mode,
            "compile_seconds": self.seconds if self.compiled else None,
            "compile_error": self.error,
        }
        if not self.compiled:
            return {**record, "compiled": False, "recompiles": None, "graph_breaks": None}
        now = dynamo_counts()
        recompiles = now["frames"] - self.after_warmup["frames"]
        eager = recompiles - (now["compiled"] - self.after_warmup["compiled"])
        return {
            **record,
            "compiled": eager == 0,
            "recompiles": recompiles,
            "graph_breaks": self.after_warmup["graph_breaks"],
        }


def warm_up(
    forward: nn.Module,
    batches: Sequence[WarmupBatch],
    device: torch.device,
    precision: Precision,
    dynamic_batch: bool = True,
) -> None:
    """Runs every shape once, so that compilation happens here and not in the timed epochs (the
    batch dimension is dynamic from the start: one train and one eval graph for all sizes). No
    gradient and no trace in the random state is left (dropout), so the run matches an eager one
    step for step."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for item in batches:
            mark_cuda_graph_step()  # reduce-overhead: each item is a new step
            forward.train(item.train)
            with ExitStack() as stack:
                if not item.train:  # as evaluate() runs: inputs made inside inference mode
                    stack.enter_context(torch.inference_mode())
                inputs = {k: v.clone() for k, v in model_inputs(to_device(item.batch, device)).items()}
                for tensor in inputs.values() if dynamic_batch else ():  # one graph for all batch sizes
                    torch._dynamo.maybe_mark_dynamic(tensor, 0)
                stack.enter_context(precision.autocast())
                out = forward(**inputs)
                if item.train:
                    out.float().sum().backward()
            # with CUDA graphs, .grad lives in the graph's memory pool and the next item's new step
            # invalidates it: a second backward accumulating into it fails; training steps set it to None too
            del out
            forward.zero_grad(set_to_none=True)
    forward.train()


def _one_line(error: BaseException) -> str:
    """The root cause of a compiler error in one line (dynamo wraps it: 'backend=... raised:')."""
    while error.__cause__ is not None or getattr(error, "inner_exception", None) is not None:
        error = error.__cause__ or error.inner_exception
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def compile_model(
    model: nn.Module,
    setting,
    device: torch.device,
    precision: Precision,
    warmup: Sequence[WarmupBatch],
    padding: str = "max_length",
    backend: str = "inductor",
) -> Compiled:
    """Compiles `model` for every shape in `warmup`. Parameters are shared with the compiled
    module, so `model` is what gets saved. With dynamic padding the lengths are dynamic (one
    graph, not one per length); fixed shapes compile once each."""
    mode, fallback_allowed = compile_mode(setting, device, padding)
    if mode is None:
        return Compiled(model, None, fallback_allowed)
    started = time.perf_counter()
    try:
        # CUDA graphs need the forward in one graph: a graph break fails here, in one line, not mid-run
        forward = torch.compile(
            model,
            mode=mode,
            backend=backend,
            dynamic=True if padding == "dynamic" else None,
            fullgraph=mode == "reduce-overhead",
        )
        warm_up(forward, warmup, device, precision, dynamic_batch=mode != "reduce-overhead")
    except Exception as error:  # a GPU too old for Triton, no Triton, no C compiler, ...
        model.zero_grad(set_to_none=True)
        reset_compiler()
        reason = _one_line(error)
        if not fallback_allowed:
            raise CompileError(
                f"torch.compile failed before training ({reason}); set trainer.compile=false, "
                f"or auto to fall back to eager when compiling fails"
            ) from None
        log.warning("torch.compile failed (%s); this run goes on eagerly (trainer.compile=auto)", reason)
        return Compiled(model, mode, fallback_allowed, error=reason)
    compiled = Compiled(
        forward, mode, fallback_allowed, seconds=time.perf_counter() - started, after_warmup=dynamo_counts()
    )
    if fallback_allowed:  # a later recompile that fails runs that frame eagerly instead of ending the run
        torch._dynamo.config.suppress_errors = True
    log.info("compiled the model (%s) for %d input shapes in %.1fs", mode, len(warmup), compiled.seconds)
    return compiled


def warmup_batches(prepared, batch_size: int, eval_batch_size: int) -> list:
    """One batch of every shape the run will feed the model (prepared: the job's Prepared, in
    sweep/fit/trainer.py): full and last partial train batches
    (forward + backward), full and last partial valid and test batches (evaluation). With dynamic
    padding the lengths are dynamic, so these cover the batch sizes."""
    splits, shapes = prepared.splits, []
    train_n = len(splits["train"])
    shapes += [("train", size, True) for size in {min(batch_size, train_n), train_n % batch_size} if size]
    for split in ("valid", "test"):
        n = len(splits[split])
        shapes += [(split, size, False) for size in {min(eval_batch_size, n), n % eval_batch_size} if size]
    seen, batches = set(), []
    for split, size, train in shapes:
        if (size, train) not in seen:
            seen.add((size, train))
            batches.append(WarmupBatch(prepared.collator(splits[split][list(range(size))]), train))
    return batches
