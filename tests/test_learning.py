"""Learning tests: a short GRPO run must move the metric it claims to move."""
from __future__ import annotations

import json

import pytest

from rlpost.config import load_config
from rlpost.controller import train

FORMAT_ONLY = [
    "train.warm_start=none", "train.eval_before=false", "train.eval_after=false", "log.progress=false",
    "log.tensorboard=false", "cluster.mode=local", "train.prompts_per_step=8", "rollout.n=8",
    "rollout.max_new_tokens=2", "data.task_kwargs={n_train: 256, n_test: 16}", "optim.lr=2e-3",
    "optim.warmup_steps=0", "optim.schedule=constant", "rollout.temperature=1.0", "train.eval_every=0", "train.save_every=0",
    "verify.verifiers=[{name: math}]",
    # from random init, the only learnable signal in a few steps: start the answer with a digit
    "rewards=[{name: digit_first, fn: format, kwargs: {pattern: '^[0-9]'}}]",
]


def rewards(run_dir) -> list[float]:
    return [json.loads(l)["reward/mean"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("advantage", ["grpo", "dr_grpo", "rloo"])
def test_grpo_family_raises_a_format_reward_from_random_init(tmp_path, advantage):
    steps = 25
    train(load_config("quickstart", FORMAT_ONLY + [f"run.output_dir={tmp_path}", f"train.steps={steps}", f"algo.advantage={advantage}"]))
    r = rewards(tmp_path)
    first, last = sum(r[:5]) / 5, sum(r[-5:]) / 5
    assert last > first + 0.3, (advantage, r)


def test_no_learning_with_a_zero_learning_rate(tmp_path):
    train(load_config("quickstart", FORMAT_ONLY + [f"run.output_dir={tmp_path}", "train.steps=10", "optim.lr=0"]))
    r = rewards(tmp_path)
    assert max(r) < 0.35, r
