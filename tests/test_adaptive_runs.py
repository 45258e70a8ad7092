"""Knapsack and Reinforce-Ada samplers in the RL loop on the tiny model: exact resume of the
per-prompt history, fixed-size groups from adaptive rounds, and bad options refused in one line."""
from __future__ import annotations

import shutil

import pytest

from rlpost.config import ConfigError
from rlpost.controller import train
from tests.test_controller import metrics, small_cfg

# 8 prompts, 4 per step: every prompt is seen again every other step, so Knapsack has a history to use
KNAPSACK = ["data.task_kwargs={n_train: 8, n_test: 16}", "sampler.name=knapsack",
            "sampler.kwargs={min_history: 4, n_low: 2, n_pos: 1, n_neg: 1, n_up: 10}", "algo.post=[{name: adv_clip, kwargs: {limit: 3.0}}]"]


def test_a_resumed_knapsack_run_allocates_as_the_uninterrupted_one(run_dir):
    cfg = small_cfg(run_dir, "train.steps=6", "train.save_every=3", *KNAPSACK)
    train(cfg)
    straight = metrics(run_dir)
    assert [r["rollout/generated"] for r in straight] == [16.0] * 6  # the uniform budget, every step
    assert any(r["rollout/samples_per_prompt"] != [4.0] * 4 for r in straight[2:])  # it allocated from history
    assert all(r["sampler/prompts_new"] == 4 for r in straight[:2])
    shutil.rmtree(run_dir / "checkpoints" / "step_000006")
    train(cfg)  # resumes at step 3 with the history saved there
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(metrics(run_dir)) == strip(straight)


def test_reinforce_ada_trains_on_fixed_groups_with_the_pool_baseline(run_dir):
    train(small_cfg(run_dir, "train.steps=2", "sampler.name=reinforce_ada",
                    "sampler.kwargs={variant: balanced, round_size: 4, max_rounds: 3}", "algo.advantage=global_baseline"))
    rows = metrics(run_dir)
    for r in rows:
        assert r["train/completions"] <= 16 and 16 <= r["rollout/generated"] <= 48
        assert r["rollout/rounds"] >= 1 and r["sampler/unresolved"] + sum(r[f"sampler/retired_round{t}"] for t in (1, 2, 3)) == 4
        assert r["rollout/samples_per_prompt_max"] <= 12 and "train/samples_nonzero_adv_frac" in r


@pytest.mark.parametrize("override, message", [
    ("sampler.kwargs={budget: 10}", r"sampler 'knapsack' \(sampler.kwargs\): rollout.n=4 x train.prompts_per_step=4 = 16 rollouts is above sampler.kwargs.budget=10"),
    ("sampler.kwargs={n_neg: 5}", "sampler.kwargs.n_neg=5 x train.prompts_per_step=4 = 20 rollouts is above the uniform budget 16"),
    ("sampler.kwargs={threshold: 2}", r"threshold=2: expected a number in \[0, 1\]"),
    ("sampler.kwargs={n_lo: 2}", "unexpected keyword argument 'n_lo'"),
])
def test_bad_knapsack_options_fail_before_any_model_loads(run_dir, override, message):
    with pytest.raises(ConfigError, match=message):
        train(small_cfg(run_dir, "sampler.name=knapsack", override))


def test_bad_reinforce_ada_options_fail_before_any_model_loads(run_dir):
    with pytest.raises(ConfigError, match=r"sampler 'reinforce_ada' \(sampler.kwargs\): max_rounds=0: expected an integer >= 1"):
        train(small_cfg(run_dir, "sampler.name=reinforce_ada", "sampler.kwargs={max_rounds: 0}"))


def test_max_rollouts_ends_the_run_at_equal_compute(run_dir):
    """Reinforce-Ada draws more per step than uniform; train.max_rollouts stops it at a budget in completions."""
    train(small_cfg(run_dir, "train.steps=50", "train.max_rollouts=100", "sampler.name=reinforce_ada",
                    "sampler.kwargs={round_size: 4, max_rounds: 3}", "algo.advantage=global_baseline"))
    rows = metrics(run_dir)
    assert len(rows) >= 3 and rows[-1]["rollout/total"] >= 100 > rows[-2]["rollout/total"]
    assert rows[-1]["rollout/total"] == sum(r["rollout/generated"] for r in rows)


def test_knapsack_streams_its_single_round(run_dir):
    """One round per step: streamed parts carry Knapsack's allocation, and the history still updates."""
    train(small_cfg(run_dir, "train.steps=4", "train.stream_parts=2", *KNAPSACK))
    rows = metrics(run_dir)
    assert [r["rollout/stream_parts"] for r in rows] == [2.0] * 4 and all(r["rollout/generated"] == 16 for r in rows)
    assert any(r["rollout/samples_per_prompt"] != [4.0] * 4 for r in rows[2:])


def test_sampler_kwargs_are_typed_like_stage_kwargs(run_dir):
    """YAML reads 5e-1 as a string: sampler kwargs annotated float/int become numbers, as stage kwargs do."""
    from rlpost.controller import build_sampler

    s = build_sampler(small_cfg(run_dir, "sampler.name=knapsack", "sampler.kwargs={threshold: 5e-1, n_up: '32'}"))
    assert s.threshold == 0.5 and s.options["n_up"] == 32
    with pytest.raises(ConfigError, match=r"sampler 'knapsack' \(sampler.kwargs\): kwarg alpha must be a number, got 'high'"):
        build_sampler(small_cfg(run_dir, "sampler.name=knapsack", "sampler.kwargs={alpha: high}"))
