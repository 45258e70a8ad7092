#!/usr/bin/env bash
# Fetch, where pip can reach an index, the wheels scripts/gpu_check.sh installs on a GPU machine that cannot:
# rlpost's pure-Python needs that the workplace's CUDA image lacks (it has torch, transformers, peft,
# accelerate, pytest). Ray and vLLM are not among them (too large to carry): the GPU checks run rlpost's
# local mode, and the vLLM GPU test is skipped there unless vLLM is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION=${PY_VERSION:-3.12}
rm -rf .whl && mkdir -p .whl
for pkg in pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
           math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
done
ls -la .whl
