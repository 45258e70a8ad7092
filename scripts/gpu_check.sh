#!/usr/bin/env bash
# The GPU check (issue 16): run on a machine with a CUDA GPU, from the repository root, in under 8 minutes.
#   1. what rlpost needs and the machine lacks: wheels from .whl/ (scripts/gpu_wheels.sh fetches them where
#      pip can reach an index; on the device tool carry .whl), else pip install -e ".[dev,lora]"
#   2. the GPU-marked tests: placement, learner and engine on CUDA, parity after sync in both placements and
#      every update mode, colocated vLLM with sleep/wake (skipped where vLLM is not installed)
#   3. the quickstart on the GPU (local mode, colocated placement), its held-out accuracy before and after
#   4. a throughput line: generation and training tokens/s for a model of SmolLM2-135M's shape, bf16
# Logs and JSON go to $OUT (the device tool's folder) or runs/gpu_check. Exit code: the number of failed parts.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-runs/gpu_check}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
failed=0
part() { echo; echo "=== $1 ($(date -u +%H:%M:%S))"; }

part "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no NVIDIA GPU here"; exit 1; }
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), '| transformers', transformers.__version__)"

part "install"
if ! $PY -c "import pydantic, math_verify, yaml, rich" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/rlpost-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/rlpost-site
  else
    $PY -m pip install -q -e ".[dev,lora]" || exit 1
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import rlpost.controller; print('rlpost imports')" || exit 1

part "GPU-marked tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_placement.py 2>&1 | tee "$OUT_DIR/gpu_tests.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=$((failed + 1))

part "quickstart on the GPU (local, colocated)"
timeout 240 $PY -m rlpost.cli train recipes/quickstart.yaml cluster.mode=local cluster.placement=colocated \
  cluster.learner_gpus=1 run.name=gpu-quickstart run.output_dir=runs/gpu-quickstart log.progress=false \
  train.eval_every=0 --no-resume 2>&1 | tee "$OUT_DIR/quickstart.log" | grep -v "^Loading\|^Writing" | tail -15
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=$((failed + 1))
cp runs/gpu-quickstart/summary.json "$OUT_DIR/quickstart_summary.json" 2>/dev/null

part "throughput (SmolLM2-135M shape, bf16)"
timeout 150 $PY scripts/bench/device_throughput.py --out "$OUT_DIR/device_throughput.json" 2>&1 | grep -v "^Loading" | tail -12
[ "${PIPESTATUS[0]}" -eq 0 ] || failed=$((failed + 1))

part "done: $failed part(s) failed"
exit $failed
