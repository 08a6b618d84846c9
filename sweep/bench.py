"""Throughput benchmarks: the project's train step against a bare PyTorch step on the same model, and more.

python -m sweep.bench --model bert-tiny                      # tiny BERT, fp32, batch 32 x 128 tokens
python -m sweep.bench --model modernbert-tiny --pooling mean --steps 30 --rounds 5
python sweep/bench.py --model bert --device cuda --precision bf16 --compile   # BERT-base size
python sweep/bench.py --model bert --device cuda --precision bf16 --compile reduce-overhead --batch-size 8
python -m sweep.bench --model bert-tiny --data               # + IMDB data preparation, cold and warm
python sweep/bench.py --quick --model modernbert-tiny        # a few seconds: what the tests run
python sweep/bench.py --regimes --model bert --pooling mean  # LoRA's step and the frozen encoding vs fine-tuning
python sweep/bench.py --inference RUN_DIR --threads 2         # torch vs its ONNX export (fp32, int8), served
python sweep/bench.py --long --model bert-tiny --max-len 512  # gradient checkpointing; padded vs grouped batches
"""

import sys

from sweep.benchmarks.data_prep import bench_data
from sweep.benchmarks.options import parse_args
from sweep.benchmarks.steps import bench_steps, print_steps
from sweep.errors import InputError


def main(argv=None) -> int:
    args = parse_args(argv, __doc__)
    if args.inference:
        from sweep.benchmarks.inference import bench_inference, print_inference

        threads = args.threads or 2
        try:
            rows = bench_inference(args.inference, args.rounds, threads)
        except InputError as error:  # a run dir without best/, a checkpoint or an export that does not load
            print(f"bench.py: error: {error}", file=sys.stderr)
            return 2
        print_inference(args.inference, rows, args.rounds, threads)
        return 0
    if args.long:
        from sweep.benchmarks.long_texts import bench_long, print_long

        print_long(args, bench_long(args))
        return 0
    if args.regimes:
        from sweep.benchmarks.regimes import bench_regimes, print_regimes  # peft: only here

        print_regimes(args, bench_regimes(args))
        return 0
    print_steps(args, bench_steps(args))
    return bench_data(args.data_dir, args.max_len, args.truncation) if args.data else 0


if __name__ == "__main__":
    sys.exit(main())
