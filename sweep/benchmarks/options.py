"""The options of `sweep/bench.py`, and what each benchmark compares (--help shows it)."""

import argparse

from sweep.benchmarks.data_prep import REPO
from sweep.benchmarks.harness import MODELS
from sweep.config.schema import TRUNCATIONS
from sweep.errors import OneLineParser

COMPARED = """"project" is `sweep.fit.step.train_step` on a `sweep.model.classifier.Classifier` with the optimizer of
`sweep.fit.optimizer.build_optimizer` (the seed recipe: Adam, lr 5e-5, constant); "bare" is a plain loop
(forward, cross_entropy, backward, torch.optim.Adam with its defaults, zero_grad) on the same
architecture, weights, batches and precision. Both run in this process, interleaved in blocks
(project, bare / bare, project, ...) over several rounds, so clock drift and noisy neighbours hit
both alike; warmup steps are not timed. One more untimed step per side counts its host syncs (device
values the host reads, each a stall of the GPU queue; eager runs only). Models are random-init from
configs: no download. The train-step benchmark is sweep/benchmarks/steps.py; --data's, sweep/benchmarks/data_prep.py;
--regimes' (method=lora's train step and method=frozen's encoding pass against the full fine-tuning
step, on the same weights and batches), sweep/benchmarks/regimes.py, which needs peft; --inference's (a
run's best/ in torch and its ONNX export in ONNX Runtime, batch 1 and 32), sweep/benchmarks/inference.py;
--long's (gradient checkpointing's step time and memory; max_length padding against dynamic padding of
length-grouped batches on real review lengths), sweep/benchmarks/long_texts.py.
Needs only torch and transformers (GPU machines have no hydra or datasets); --data needs datasets."""


def parse_args(argv=None, usage: str = "") -> argparse.Namespace:
    """usage: the command's docstring, shown first by --help."""
    description = f"{usage}\n{COMPARED}"
    p = OneLineParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    add_other_benchmarks(p)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup = 3, 2, 1
    return checked(p, args)


def add_other_benchmarks(p: argparse.ArgumentParser) -> None:
    """The options of the benchmarks other than the train step's: --data beside it, the others instead."""
    p.add_argument("--data", action="store_true", help="also time the IMDB data preparation, cold and warm cache")
    p.add_argument(
        "--truncation", default="head", choices=TRUNCATIONS, help="--data: the tokens kept of a longer review"
    )
    p.add_argument(
        "--regimes",
        action="store_true",
        help="instead: the fine-tuning step, LoRA's step and the frozen encoding pass on the same model",
    )
    p.add_argument(
        "--long",
        action="store_true",
        help="instead: the train step with and without gradient checkpointing, and padded vs length-grouped batches",
    )
    p.add_argument("--reviews", type=int, default=512, help="--long: the real reviews whose lengths are batched")
    p.add_argument(
        "--data-dir",
        default=str(REPO.parent / "shared" / "data" / "imdb"),
        help="dir with IMDB train.parquet and test.parquet (default: ../shared/data/imdb of the repo)",
    )
    p.add_argument(
        "--inference",
        metavar="RUN_DIR",
        help="instead: a run's classifier served by torch and by its ONNX export (samples/s, p50/p95 latency)",
    )


def checked(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """The warmup's default; counts below what a benchmark can run with: one line naming the option (p.error)."""
    if args.warmup is None:
        args.warmup = 10 if args.compile else 3
    for option in ("batch_size", "max_len", "steps", "rounds", "threads", "reviews"):
        value = getattr(args, option)
        if value is not None and value < 1:
            p.error(f"--{option.replace('_', '-')} {value}: must be at least 1")
    if args.warmup < 0:
        p.error(f"--warmup {args.warmup}: must be 0 or more")
    return args
