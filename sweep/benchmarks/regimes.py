"""The regimes benchmark of `python sweep/bench.py --regimes`: on one model (the same initial
weights and batches), the full fine-tuning train step, LoRA's train step (method=lora's adapters,
sweep/model/regimes.py) and method=frozen's encoding pass (inference mode, every parameter-free pooling
at once, as sweep/fit/frozen_features.py caches them), timed in interleaved rounds whose order rotates, so that
clock drift and noisy neighbours hit every side alike. Needs torch, transformers and peft."""

import copy
import inspect
import os
import statistics
from typing import Dict, List

import torch

from sweep.benchmarks.harness import SEED_OPTIM, Sides, make_batches, setup, time_block, where
from sweep.config.schema import MethodConfig, PoolingConfig
from sweep.fit.optimizer import build_optimizer
from sweep.fit.step import train_step
from sweep.model.classifier import Classifier
from sweep.model.device import resolve_precision
from sweep.model.pooling import ENCODED, POOLERS
from sweep.model.regimes import build_classifier

SIDES = ("finetune", "lora", "frozen encode")


def build_regimes(args) -> Dict[str, object]:
    device, config, encoder = setup(args)
    pooling = PoolingConfig(name=args.pooling)
    finetune = Classifier(copy.deepcopy(encoder), args.pooling).to(device).train()
    lora = build_classifier(copy.deepcopy(encoder), MethodConfig(name="lora"), pooling, 2, 0.1).to(device).train()
    frozen = build_classifier(encoder, MethodConfig(name="frozen"), pooling, 2, 0.1).to(device).eval()
    token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    batches = make_batches(config, 4, args.batch_size, args.max_len, device, token_types)
    precision = resolve_precision(args.precision, device)
    total_steps = args.warmup + args.steps * args.rounds
    optimizers = {
        name: build_optimizer(model, SEED_OPTIM, total_steps)
        for name, model in (("finetune", finetune), ("lora", lora))
    }

    def encode(inputs, labels):
        with torch.inference_mode(), precision.autocast():
            states = frozen.token_states(**inputs)
            return [POOLERS[name](states, inputs["attention_mask"]) for name in ENCODED]

    steps = {
        "finetune": lambda inputs, labels: train_step(finetune, inputs, labels, *optimizers["finetune"], precision),
        "lora": lambda inputs, labels: train_step(lora, inputs, labels, *optimizers["lora"], precision),
        "frozen encode": encode,
    }
    trainable = {"finetune": finetune.trainable_parameters(), "lora": lora.trainable_parameters(), "frozen encode": 0}
    return {
        "sides": Sides(steps, {}, batches, device, finetune.num_parameters(), 0.0),
        "trainable": trainable,
    }


def bench_regimes(args) -> dict:
    load = os.getloadavg()[0]
    built = build_regimes(args)
    sides: Sides = built["sides"]
    for side in SIDES:
        time_block(sides, side, args.warmup)
    seconds: Dict[str, List[float]] = {side: [] for side in SIDES}
    for r in range(args.rounds):
        order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]
        for side in order:
            seconds[side].append(time_block(sides, side, args.steps))
    return {
        "device": sides.device,
        "load": load,
        "params": sides.params,
        "trainable": built["trainable"],
        "seconds": seconds,
    }


def print_regimes(args, res) -> None:
    print(
        f"bench --regimes {args.model}  pooling={args.pooling}  batch {args.batch_size} x {args.max_len} tokens  "
        f"{args.precision}  [{where(res['device'], res['load'])}]"
    )
    print(f"{res['params'] / 1e6:.2f}M params; {args.rounds} rounds x {args.steps} timed steps per side")
    print(f"{'side':<14} {'samples/s':>10} {'ms/step':>9} {'trainable params':>17} {'x finetune step':>16}")
    seconds = res["seconds"]
    for side, times in seconds.items():
        step_s = statistics.median(times) / args.steps
        ratio = statistics.median(f / s for f, s in zip(seconds["finetune"], times))  # per round: same conditions
        print(
            f"{side:<14} {args.batch_size / step_s:>10.1f} {1e3 * step_s:>9.2f} {res['trainable'][side]:>17,} "
            f"{ratio:>15.2f}x"
        )
    print(
        "x finetune step: samples/s against the full fine-tuning train step, median of the per-round ratios; "
        "frozen encode is the forward alone (no gradient), once per example for all of a probe's epochs"
    )
