"""SFT: completion-only loss, a loadable HF folder, reuse by fingerprint, and a short learning run."""
from __future__ import annotations

import json

import pytest
import torch

from rlpost.config import load_config
from rlpost.evaluate import evaluate
from rlpost.models.loading import load_model, load_tokenizer
from rlpost.rollout.hf_engine import HFEngine
from rlpost.scoring import make_verifier_runner
from rlpost.sft import run_sft


def sft_cfg(tmp_path, *extra):
    return load_config("tiny-arith-sft", [f"run.output_dir={tmp_path}", "eval.limit=200", *extra])


def test_short_sft_learns_addition_and_saves_a_loadable_folder(tmp_path):
    cfg = sft_cfg(tmp_path, "sft.steps=250", "sft.batch_size=128")
    out = run_sft(cfg)
    model, tok = load_model(out), load_tokenizer(out)
    assert model.config.model_type == "qwen2" and tok.eos_token == "<eos>"
    with make_verifier_runner(cfg) as runner:
        result = evaluate(cfg, HFEngine(out), tok, runner)
    # The full recipe (1000 steps) reaches >= 80%; see scripts/bench/sft_arith.py. An untrained model scores 0.
    assert result["greedy_accuracy"] >= 0.04, result
    assert result["mean_length"] < 5  # it learned to stop after the answer


def test_sft_is_reused_when_the_config_is_unchanged(tmp_path):
    cfg = sft_cfg(tmp_path, "sft.steps=2")
    out = run_sft(cfg)
    stamp = json.loads((out / "rlpost_sft.json").read_text())
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert run_sft(cfg) == out and (out / "model.safetensors").stat().st_mtime_ns == mtime
    changed = sft_cfg(tmp_path, "sft.steps=3")
    run_sft(changed)
    assert json.loads((out / "rlpost_sft.json").read_text())["fingerprint"] != stamp["fingerprint"]


def test_loss_ignores_prompt_tokens(tmp_path):
    """Two records with the same answer but different prompts give gradients only through answers."""
    from rlpost.models.forward import build_inputs

    ids, attn, pos, targets, mask = build_inputs([[5, 6, 7], [8]], [[9, 2], [10, 11, 2]], pad_id=0)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert targets.tolist() == [[9, 2, 0], [10, 11, 2]]
    assert attn.tolist() == [[1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert pos.tolist()[1] == [0, 0, 0, 1, 2, 3]


def test_sft_runs_on_a_learner_actor_and_lora_sft_saves_a_merged_model(tmp_path):
    """SFT goes through the Learner actor (local in-process here): with sft.update=lora only the adapter
    trains, and the saved folder is a plain model whose weights moved off the base's in the adapted layers."""
    from safetensors.torch import load_file

    from rlpost.models.loading import resolve_model_path

    cfg = sft_cfg(tmp_path, "sft.steps=3", "sft.update=lora", "sft.lr=0.05", "cluster.mode=local", "learner.lora.r=4")
    out = run_sft(cfg)
    assert not (out / "adapter_config.json").exists()
    base = load_file(resolve_model_path(cfg.model) / "model.safetensors")
    tuned = load_file(out / "model.safetensors")
    moved = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert moved and all("proj" in k for k in moved)  # the adapted projections, nothing else
