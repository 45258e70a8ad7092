"""Dynamic reward weighting in the RL loop: held-out objective vectors, the hypervolume combiner's
per-step validation, the gradient combiner with LoRA and the Knapsack sampler, exact resume of their
state, and bad recipes refused before any model loads."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from rlpost.config import ConfigError, load_config
from rlpost.controller import train
from test_callbacks import strip
from test_controller import SMALL, metrics

REWARDS = (
    "rewards=[{name: correctness, kwargs: {verifier: math}}, {name: digits, fn: format, kwargs: {pattern: '^[0-9]'}}, "
    "{name: short, fn: conciseness, kwargs: {max_length: 4}}, {name: always, fn: format, kwargs: {pattern: ''}}]"
)


def cfg_for(run_dir, *extra: str):
    return load_config("quickstart", SMALL + [f"run.output_dir={run_dir}", REWARDS, *extra])


def test_evaluation_reports_every_rewards_mean(run_dir):
    train(cfg_for(run_dir, "train.steps=1", "train.eval_after=true"))
    result = json.loads((run_dir / "eval_after.json").read_text())
    assert {"reward/correctness", "reward/digits", "reward/short", "reward/always"} <= result.keys()
    assert result["reward/always"] == 1.0 and 0.0 <= result["reward/short"] <= 1.0


def test_hypervolume_validates_every_step_and_feeds_the_next_steps_scale(run_dir):
    combiner = "algo.combiner={name: hypervolume, kwargs: {prompts: 8, apply_to: advantage, objectives: [digits, short]}}"
    cfg = cfg_for(run_dir, "train.steps=4", "train.save_every=2", combiner)
    train(cfg)
    rows = metrics(run_dir)
    assert rows[0]["hv/rho"] == 1.0
    for prev, row in zip(rows, rows[1:]):
        assert row["hv/rho"] == prev["hv/rho_next"]
    assert all(0.5 <= r["hv/rho_next"] < 2.0 and {"val/digits", "val/short", "hv/volume"} <= r.keys() for r in rows)
    state = torch.load(run_dir / "checkpoints" / "step_000004" / "controller.pt", weights_only=False)["pipeline"]["algo.combiner"]
    assert len(state["reference"]) == 2 and state["rho"] == rows[-1]["hv/rho_next"]
    straight = metrics(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")
    train(cfg)  # from step 2: the front, reference and scale come back, so the run ends the same
    assert strip(metrics(run_dir)) == strip(straight)


def test_gradient_weights_with_lora_and_the_knapsack_sampler(run_dir):
    """One recipe composing the gradient combiner, a LoRA update and Knapsack budgets; an objective that
    is the same for every completion has no gradient, so no influence, and loses weight."""
    pytest.importorskip("peft")
    cfg = cfg_for(
        run_dir, "train.steps=3", "learner.update=lora", "optim.lr=1e-2",
        "algo.combiner={name: gradient, kwargs: {mu: 1.0e-3}}",
        "sampler={name: knapsack, kwargs: {n_low: 2, n_up: 8, min_history: 1}}",
    )
    train(cfg)
    rows = metrics(run_dir)
    for r in rows:
        weights = [r[f"weights/{n}"] for n in ("correctness", "digits", "short", "always")]
        assert sum(weights) == pytest.approx(1.0, abs=1e-5) and min(weights) >= 0
        assert r["influence/always"] == 0.0 and r["time/objective_gradients"] > 0 and r["combine/gradient_bytes"] > 0
    assert rows[-1]["weights/always"] < 0.25 and len({r["weights/digits"] for r in rows}) == 3


def test_gradient_weights_resume_exactly_with_full_updates(run_dir):
    cfg = cfg_for(run_dir, "train.steps=4", "train.save_every=2", "algo.kl_coef=0.01",
                  "algo.combiner={name: gradient, kwargs: {mu: 1.0e-4, params: 'layers\\.[01]\\.'}}")
    train(cfg)
    straight = metrics(run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step_000004")
    train(cfg)
    assert strip(metrics(run_dir)) == strip(straight)
    assert straight[-1]["weights/digits"] != straight[0]["weights/digits"]


@pytest.mark.parametrize("combiner, message", [
    ("{name: hypervolume, kwargs: {reference: [0.1, 0.2]}}", "reference has 2 values for 4 objectives"),
    ("{name: fixed, kwargs: {weights: {length: 1.0}}}", "no reward produces them"),
    ("{name: gradient, kwargs: {weights: {digits: -1.0, short: 1.0}}}", "must be finite and >= 0"),
])
def test_bad_combiner_input_fails_before_any_model_loads(run_dir, combiner, message, monkeypatch):
    import rlpost.controller as controller

    monkeypatch.setattr(controller, "resolve_model_path", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=message):
        train(cfg_for(run_dir, f"algo.combiner={combiner}"))
