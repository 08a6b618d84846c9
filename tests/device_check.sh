#!/usr/bin/env bash
# The GPU checks, for a lent GPU machine (see ../shared/DESIGN.md: it lacks hydra, datasets,
# wandb). Here first, with the project's venv active:
#   bash tests/device_check.sh bundle   # ../shared/tools/device-bundle.sh + the submitit wheels it lacks
# Then two device calls, each with carry [".device"], the second right after the first (the machine
# stays warm 30 s):
#   bash tests/device_check.sh tests    # pytest -m gpu, each test in its own process, all at once (~4 min)
#   bash tests/device_check.sh bench    # the bench figures the issue asks for, one at a time (~5.5 min)
# What comes back: a summary on stdout, $OUT/tests.tgz (logs, metrics.json, train.log of every run),
# $OUT/bench.log.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
if [ "${1:-}" = bundle ]; then  # here, not on the device: hydra's plugin scan imports the submitit launcher
  ../shared/tools/device-bundle.sh || exit 1
  for pkg in submitit hydra-submitit-launcher cloudpickle; do
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d .device/whl "$pkg==$(python -c "import importlib.metadata as m; print(m.version('$pkg'))")"
  done
  exit
fi
OUT=${OUT:-/tmp/device-check}; WORK=/tmp/device-work
rm -rf /tmp/site "$WORK"; mkdir -p "$OUT" "$WORK"  # pip --target skips dirs left by an earlier call (hydra_plugins/)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD ENCODER_SWEEP_MINILM=$PWD/.device/minilm ENCODER_SWEEP_IMDB=$PWD/.device/imdb
nvidia-smi -L
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
started=$SECONDS
left() { echo $(( $1 - (SECONDS - started) )); }  # seconds left of a budget of $1
case "${1:-tests}" in
  tests)  # one process per test: they share the GPU (tiny models) and the 16 cores (compilation)
    mapfile -t nodes < <(python3 -m pytest -m gpu --collect-only -q -o addopts="" -p no:cacheprovider tests/test_gpu.py | grep ::)
    for i in "${!nodes[@]}"; do
      timeout "${TESTS_S:-270}" python3 -m pytest -m gpu -v -s -p no:cacheprovider -o addopts="" \
        --basetemp="$WORK/t$i" "${nodes[$i]}" >"$WORK/t$i.log" 2>&1 &
    done
    wait
    for i in "${!nodes[@]}"; do
      echo "== ${nodes[$i]}"; grep -E "^(bf16|fp16|fp32) |MiniLM|keys that differ|PASSED|FAILED|SKIPPED|Error|assert|passed|failed" "$WORK/t$i.log" | cut -c1-600
    done
    tar czf "$OUT/tests.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' --exclude='*.arrow' .
    ;;
  bench)  # one at a time: figures to quote; stops starting new ones when the budget runs out
    budget=${BENCH_S:-320}
    bench() { local t; t=$(( $(left "$budget") < $1 ? $(left "$budget") : $1 )); (( t > 20 )) || return 0
      timeout "$t" python3 sweep/bench.py --device cuda "${@:2}" 2>&1 | grep -v Warn | tee -a "$OUT/bench.log"; }
    bench 120 --model bert --precision bf16 --compile --batch-size 32 --steps 20 --rounds 6
    bench 120 --model modernbert --precision bf16 --compile --batch-size 32 --steps 20 --rounds 6
    bench 100 --model bert --precision bf16 --compile reduce-overhead --batch-size 8 --steps 50 --rounds 6
    bench 40 --model bert --precision bf16 --batch-size 32 --steps 10 --rounds 6
    bench 80 --model bert --precision bf16 --compile --batch-size 8 --steps 50 --rounds 6
    ;;
esac
echo "device_check $1: $((SECONDS - started)) s"
