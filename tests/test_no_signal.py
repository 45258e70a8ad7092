"""A run that cannot learn stops and says why: every reward unknown step after step, or a reward
reading a verifier the recipe does not configure (refused before any model loads)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rlpost.config import ConfigError, load_config
from rlpost.controller import NoSignalError, train
from test_controller import SMALL, metrics

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def cfg_for(run_dir, *extra: str):
    return load_config("quickstart", SMALL + [f"run.output_dir={run_dir}", *extra])


def test_a_reward_naming_an_unconfigured_verifier_is_refused_before_any_model_loads(run_dir, monkeypatch):
    import rlpost.controller as controller

    monkeypatch.setattr(controller, "resolve_model_path", lambda *a: pytest.fail("a model was loaded"))
    with pytest.raises(ConfigError, match=r"rewards 'correctness': verifier 'ghost' is not configured \(verify.verifiers: math\)"):
        train(cfg_for(run_dir, "rewards=[{name: correctness, kwargs: {verifier: ghost}}]"))
    with pytest.raises(ConfigError, match="verifier 'math' is not configured"):  # the reward's default verifier
        train(cfg_for(run_dir, "rewards=[{name: correctness}]", "verify.verifiers=[{name: exact, fn: exact_numeric}]"))


def test_a_failing_reward_stops_the_run_after_max_empty_steps_naming_it(run_dir):
    with pytest.raises(NoSignalError, match=r"3 steps in a row \(to step 2\) had no completion with a known reward.*"
                                            r"reward 'down': RuntimeError: reward backend unavailable"):
        train(cfg_for(run_dir, "train.steps=10", f"rewards=[{{name: down, fn: '{FIXTURES / 'plugin_rewards.py'}:broken'}}]"))
    assert [r["step"] for r in metrics(run_dir)] == [0, 1]  # the steps before the stop are logged


def test_a_failing_verifier_is_named_and_the_limit_is_configurable(run_dir):
    verifier = f"verify.verifiers=[{{name: bad, fn: '{FIXTURES / 'plugin_verifiers.py'}:not_a_dict'}}]"
    with pytest.raises(NoSignalError, match=r"1 steps in a row \(to step 0\).*verifier 'bad': 16 errors, 0 timeouts in 16 completions"):
        train(cfg_for(run_dir, "train.steps=5", "train.max_empty_steps=1", verifier, "rewards=[{name: correctness, kwargs: {verifier: bad}}]"))
    train(cfg_for(run_dir, "train.steps=2", "train.max_empty_steps=0", verifier, "rewards=[{name: correctness, kwargs: {verifier: bad}}]"),
          resume=False)  # 0: never stops (an explicit choice), every step logged as dropped
    assert [r["reward/dropped"] for r in metrics(run_dir)] == [16.0, 16.0]
