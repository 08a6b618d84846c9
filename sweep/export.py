"""Export a run's best checkpoint to ONNX, checked against torch on the run's own test rows.

    encoder-sweep-export RUN_DIR                    # RUN_DIR/best/onnx/model.onnx (fp32)
    encoder-sweep-export RUN_DIR --quantize int8    # + model_int8.onnx (7-bit int8 weights: holds on every x86-64 CPU)
    python sweep/export.py RUN_DIR --opset 20 --check-rows 200

The check: each model's predictions on up to --check-rows of the run's test rows against torch's (fp32:
every label, probabilities within 1e-4; int8: at least 98% of the labels, and where it falls short, the
layer kinds to keep fp32 with --keep-fp32). An export that falls short keeps its files, named in
export.json's failed_check, and exits 1. predict.py --backend onnx|onnx-int8 serves the export.
Needs the onnx extra: pip install -e ".[onnx]"."""

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from sweep.errors import InputError, OneLineParser
from sweep.serve.onnx_export import CHECK_ROWS, MIN_OPSET, export, locate, summary


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run dir (its best/ is exported) or a best/ dir")
    p.add_argument("--quantize", choices=["int8"], help="also write model_int8.onnx (dynamic int8 quantization)")
    p.add_argument(
        "--keep-fp32",
        action="append",
        default=[],
        metavar="KIND",
        help="a layer kind whose weights stay fp32 in int8 (repeatable): a failed int8 check names those that meet it",
    )
    p.add_argument("--opset", type=int, help=f"the ONNX opset ({MIN_OPSET} or later; default: the exporter's)")
    p.add_argument("--check-rows", type=int, default=CHECK_ROWS, help="test rows to check against torch")
    args = p.parse_args(argv)
    if args.keep_fp32 and args.quantize != "int8":
        p.error("--keep-fp32 applies to the int8 model: add --quantize int8")
    if args.check_rows < 1:
        p.error(f"--check-rows {args.check_rows}: must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        record = export(Path(args.run_dir), args.quantize == "int8", args.opset, args.check_rows, args.keep_fp32)
    except InputError as error:  # an ExportError, or the atomic write's WriteError
        print(f"export.py: error: {error}", file=sys.stderr)
        return 2
    _, best = locate(Path(args.run_dir))
    print(summary(best, record))
    if record["failed_check"]:
        failed = "; ".join(record["failed_check"])
        print(f"export.py: the check failed: {failed} (files kept, see export.json)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
