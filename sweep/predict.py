"""Classify new text with a run's best checkpoint.

    python sweep/predict.py RUN_DIR "a gripping film" "the plot was dull"
    python sweep/predict.py RUN_DIR --file reviews.csv --text-column review --out predictions.jsonl
    cat reviews.txt | python sweep/predict.py RUN_DIR/best --format jsonl
    python sweep/predict.py NLI_RUN_DIR --file pairs.jsonl --text-column premise --pair-column hypothesis

RUN_DIR is a run dir (its best/ is used) or that best/ dir itself. Texts come from the arguments, a
file (.txt: one per line; .csv, .jsonl, .parquet: the --text-column) or standard input (one per line);
a run trained on sentence pairs takes a table file with both columns (--pair-column). One row per
text, in input order: the predicted label's name, its class id and every class's probability, as CSV
or JSON Lines, to standard output or --out. The GPU (bf16 where the card has it) when there is one,
the run's max_len and kept tokens; --backend onnx or onnx-int8 runs its ONNX export without torch."""

import argparse
import sys
from typing import Optional, Sequence

from sweep.errors import InputError, OneLineParser
from sweep.serve.classify import BACKENDS, predict, read_texts, write


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run dir (its best/ is used) or a best/ dir")
    p.add_argument("texts", nargs="*", help="texts to classify (else --file, else standard input)")
    p.add_argument("--file", help="a .txt (one text per line), .csv, .jsonl or .parquet file; - for standard input")
    p.add_argument("--text-column", default="text", help="the column of texts in a table file (default: text)")
    p.add_argument("--pair-column", help="the column of each pair's second text, for a run trained on pairs")
    p.add_argument("--out", help="write here instead of standard output (.jsonl: JSON Lines)")
    p.add_argument("--format", choices=["csv", "jsonl"], help="output format (default: from --out, else csv)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (--backend torch)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch: best/'s checkpoint; onnx, onnx-int8: its export (encoder-sweep-export), on the CPU without torch",
    )
    args = p.parse_intermixed_args(argv)  # options before, between or after the texts
    if args.batch_size < 1:
        p.error(f"--batch-size {args.batch_size}: must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        texts, pairs = read_texts(args.texts, args.file, args.text_column, args.pair_column)
        table = predict(args.run_dir, texts, args.batch_size, args.device, pairs, args.backend)
        write(table, args.out, args.format)
    except InputError as error:
        print(f"predict.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
