"""Typed config: defaults, recipes, overrides, and one-line errors that name the problem."""
from __future__ import annotations

import pytest

from rlpost.config import Config, ConfigError, list_recipes, load_config


def test_defaults_validate_and_every_key_has_a_default():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.rollout.n == 8 and cfg.algo.advantage.name == "grpo"


def test_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("run: {name: x}\nrollout: {n: 4}\n")
    cfg = load_config(str(recipe), ["rollout.max_new_tokens=7", "optim.lr=1e-4", "rollout.stop=[\"\\n\"]"])
    assert (cfg.run.name, cfg.rollout.n, cfg.rollout.max_new_tokens, cfg.optim.lr) == ("x", 4, 7, 1e-4)
    assert cfg.rollout.stop == ["\n"]


def test_override_indexes_lists():
    cfg = load_config(None, ["verify.verifiers.0.fn=tests/fixtures/plugin_verifiers.py:always_true"])
    assert cfg.verify.verifiers[0].target.endswith("plugin_verifiers.py:always_true")
    with pytest.raises(ConfigError, match="index '3'"):
        load_config(None, ["verify.verifiers.3.fn=x:y"])


def test_flow_yaml_value_replaces_a_list():
    cfg = load_config(None, ["rewards=[{name: c, fn: correctness, weight: 2.0}]"])
    assert [(r.name, r.weight) for r in cfg.rewards] == [("c", 2.0)]


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.hiden_size=3", "unknown key 'model.hiden_size'"),
        ("rollout.n=many", "'rollout.n'"),
        ("rollout.n=0", "'rollout.n'"),

        ("train", "not of the form key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(override, expected):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_key_in_recipe_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("rollout:\n  samples_per_prompt: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown key 'rollout.samples_per_prompt'"):
        load_config(str(recipe))


def test_missing_and_malformed_recipe(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found: nope.yaml"):
        load_config("nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(bad))


def test_every_shipped_recipe_validates_and_has_a_description():
    recipes = list_recipes()
    assert "quickstart" in [name for name, _ in recipes]
    for name, desc in recipes:
        load_config(name)
        assert desc, f"recipe {name} has no description"
