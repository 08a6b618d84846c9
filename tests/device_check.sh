#!/usr/bin/env bash
# The GPU checks of issue #8, for a lent GPU machine (see ../shared/DESIGN.md: it lacks hydra, datasets,
# wandb). Here first: ../shared/tools/device-bundle.sh (packs them into .device/). Then two device calls,
# each with carry [".device"] and about 9 minutes:
#   bash tests/device_check.sh tests    # one reduce-overhead smoke job, then pytest -m gpu
#   bash tests/device_check.sh bench    # the bench figures the issue asks for
# Everything lands in $OUT (the device tool's output dir), as it goes.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/device-check}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD ENCODER_SWEEP_MINILM=$PWD/.device/minilm ENCODER_SWEEP_IMDB=$PWD/.device/imdb
nvidia-smi -L | tee "$OUT/env.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/env.txt"
case "${1:-tests}" in
  tests)
    timeout 120 python3 sweep/train.py -m experiment=smoke logger=none trainer.device=cuda model=bert pooling=mean \
      trainer.epochs=1 trainer.compile=reduce-overhead hydra.sweep.dir="$OUT/ro" >"$OUT/ro.log" 2>&1
    grep -h '"status"\|"error"\|"compiled"\|"recompiles"' "$OUT"/ro/*/metrics.json
    timeout 400 python3 -m pytest -m gpu -v -x -s -p no:cacheprovider -o addopts="" --junitxml="$OUT/gpu.xml" \
      tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "PASSED|FAILED|Error|^\(|MiniLM|resumed|passed|failed"
    ;;
  bench)
    bench() { timeout "$1" python3 sweep/bench.py --device cuda "${@:2}" 2>&1 | grep -v Warn | tee -a "$OUT/bench.log"; }
    bench 150 --model bert --precision bf16 --compile --batch-size 32 --steps 20 --rounds 6
    bench 150 --model modernbert --precision bf16 --compile --batch-size 32 --steps 20 --rounds 6
    bench 150 --model bert --precision bf16 --compile reduce-overhead --batch-size 8 --steps 50 --rounds 6
    bench 60 --model bert --precision bf16 --batch-size 32 --steps 10 --rounds 6
    ;;
esac
