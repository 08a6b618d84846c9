"""The train-step benchmark of `python sweep/bench.py` (its --help says what is compared and how):
the two sides built on the same weights and batches, timed in interleaved rounds, their host syncs
counted, the result printed. Needs only torch and transformers."""

import inspect
import os
import resource
import statistics
import sys

import torch
import torch.nn.functional as F
from torch import nn

from sweep.benchmarks.harness import SEED_OPTIM, Sides, make_batches, setup, time_block, where
from sweep.benchmarks.host_sync import count_host_syncs
from sweep.fit.compilation import WarmupBatch, compile_model
from sweep.fit.optimizer import build_optimizer
from sweep.fit.step import train_step
from sweep.model.classifier import Classifier
from sweep.model.device import resolve_precision


class BareClassifier(nn.Module):
    """The reference: encoder, masked pooling, dropout, linear head; the Classifier's parameter names."""

    def __init__(self, encoder: nn.Module, pooling: str, head_dropout: float = 0.1):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling
        self.dropout = nn.Dropout(head_dropout)
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def forward(self, input_ids, attention_mask, **encoder_inputs):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "mean":
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        else:
            pooled = hidden.masked_fill(mask == 0, float("-inf")).max(1).values
        return self.head(self.dropout(pooled))


def bare_step(model, inputs, labels, optimizer, autocast, scaler=None):
    with autocast():
        loss = F.cross_entropy(model(**inputs), labels)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # fp16 needs loss scaling in any loop
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad()


def count_flops(model, inputs, labels, autocast) -> float:
    """Forward + backward FLOPs of one step, counted by torch on the uncompiled model."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss = F.cross_entropy(model(**inputs), labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def build_sides(args) -> Sides:
    from transformers import AutoModel

    device, config, encoder = setup(args)
    project = Classifier(encoder, args.pooling).to(device).train()
    bare = BareClassifier(AutoModel.from_config(config), args.pooling).to(device).train()
    bare.load_state_dict(project.state_dict())  # the same weights on both sides
    token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    batches = make_batches(config, 4, args.batch_size, args.max_len, device, token_types)
    precision = resolve_precision(args.precision, device)  # the project's own autocast (and fp16 scaler)
    autocast = precision.autocast
    bare_scaler = torch.amp.GradScaler(device.type) if precision.scaler is not None else None
    flops, params = count_flops(bare, *batches[0], autocast), project.num_parameters()

    total_steps = args.warmup + args.steps * args.rounds
    optimizer, scheduler = build_optimizer(project, SEED_OPTIM, total_steps)
    bare_opt = torch.optim.Adam(bare.parameters(), lr=SEED_OPTIM.lr)  # torch's default implementation
    if args.compile:  # the project's compile path (warm-up included) against a plain torch.compile
        setting = "reduce-overhead" if args.compile == "reduce-overhead" else "true"
        warmup = [WarmupBatch({**batches[0][0], "labels": batches[0][1]}, train=True)]
        project = compile_model(project, setting, device, precision, warmup).forward
        bare = torch.compile(bare, mode=None if setting == "true" else setting)
    steps = {
        "project": lambda inputs, labels: train_step(project, inputs, labels, optimizer, scheduler, precision),
        "bare": lambda inputs, labels: bare_step(bare, inputs, labels, bare_opt, autocast, bare_scaler),
    }
    return Sides(steps, {"project": [optimizer], "bare": [bare_opt]}, batches, device, params, flops)


def time_rounds(sides: Sides, args):
    """Seconds of each side's block per round, alternating who goes first; peak memory per side."""
    cuda = sides.device.type == "cuda"
    seconds = {side: [] for side in sides.steps}
    peak = dict.fromkeys(sides.steps, 0)
    for r in range(args.rounds):
        for side in ("project", "bare") if r % 2 == 0 else ("bare", "project"):
            if cuda:
                torch.cuda.reset_peak_memory_stats(sides.device)
            seconds[side].append(time_block(sides, side, args.steps))
            if cuda:
                peak[side] = max(peak[side], torch.cuda.max_memory_allocated(sides.device))
    if not cuda:  # one process, so one peak RSS for both sides (ru_maxrss: KiB on Linux, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        peak = dict.fromkeys(sides.steps, rss)
    return seconds, peak


def bench_steps(args) -> dict:
    load = os.getloadavg()[0]  # before our own work: what else this machine is running
    sides = build_sides(args)
    for side in sides.steps:
        time_block(sides, side, args.warmup)
    host_syncs = None  # eager only: a compiled step hides its reads in generated code
    if not args.compile:
        host_syncs = {
            side: count_host_syncs(
                lambda step=step: step(*sides.batches[0]), sides.device, sides.optimizers[side]
            ).count
            for side, step in sides.steps.items()
        }
    seconds, peak = time_rounds(sides, args)
    return {
        "device": sides.device,
        "load": load,
        "params": sides.params,
        "flops": sides.flops,
        "seconds": seconds,
        "peak": peak,
        "ratios": [b / p for p, b in zip(seconds["project"], seconds["bare"])],
        "peak_kind": "GPU allocated" if sides.device.type == "cuda" else "process RSS",
        "host_syncs": host_syncs,
    }


def print_steps(args, res) -> None:
    print(
        f"bench {args.model}  pooling={args.pooling}  batch {args.batch_size} x {args.max_len} tokens  "
        f"{args.precision}  compile={args.compile or 'off'}  [{where(res['device'], res['load'])}]"
    )
    print(
        f"{res['params'] / 1e6:.2f}M params, {res['flops'] / 1e9:.2f} GFLOP per step (fwd+bwd); "
        f"{args.rounds} rounds x {args.steps} timed steps per side, {args.warmup} warmup steps"
    )
    print(f"{'side':<8} {'samples/s':>10} {'ms/step':>9} {'TFLOP/s':>8} {'peak memory':>12}")
    for side, times in res["seconds"].items():
        step_s = statistics.median(times) / args.steps  # the median round: robust to a noisy neighbour
        print(
            f"{side:<8} {args.batch_size / step_s:>10.1f} {1e3 * step_s:>9.2f} {res['flops'] / step_s / 1e12:>8.3f} "
            f"{res['peak'][side] / 2**20:>8.0f} MiB  ({res['peak_kind']})"
        )
    ratios = res["ratios"]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    print(
        f"ratio project/bare {statistics.median(ratios):.3f}  (samples/s; median of {len(ratios)} rounds, "
        f"middle half {q1:.3f}-{q3:.3f})"
    )
    syncs = res["host_syncs"]
    if syncs is None:
        print("host syncs per step: not counted under --compile (traced code skips transformers' mask checks)")
    else:  # each one stalls the GPU queue: the host waits for the device, then the device for the host
        print(
            f"host syncs per step: project {syncs['project']}, bare {syncs['bare']}  "
            f"(device values read on the host, e.g. transformers' padding_mask.all(); one eager step)"
        )
    if q3 / q1 > 1.1:  # bursts of other load hit whole blocks: the median needs finer pairs or more rounds
        print(
            "noisy: the rounds disagree (other processes on this machine?); pair the sides step by step "
            "with --steps 1 --rounds 300, or use --threads 1"
        )
