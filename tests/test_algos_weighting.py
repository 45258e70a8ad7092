"""Dynamic reward weighting on hand-computed numbers (spec dynamic_weighting_and_next.md, A.2.7 and A.3.5):
hypervolume, the front, the meta-reward, the gradient-weight update, and the combine stages."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rlpost.algos.advantages import grpo, rloo
from rlpost.algos.combine import Gradient, Hypervolume
from rlpost.algos.stage import StageContext
from rlpost.algos.weighting import (
    add_to_front, clip_rows, exponentiated_update, hypervolume, influence, meta_reward, nondominated, oriented,
)
from rlpost.config import AlgoConfig, ConfigError
from rlpost.pipeline import Pipeline
from rlpost.types import Batch, Completion, Group, PromptItem, Scored, pool_stats

NAMES = ["correctness", "conciseness", "format"]


def mo_batch(groups: list[list[tuple[float, ...]]], names: list[str] = NAMES, weights: list[float] | None = None) -> Batch:
    """One group per list of objective vectors; completion i has 2 + i tokens."""
    out = {}
    w = dict(zip(names, weights or [1.0] * len(names)))
    for key, vectors in enumerate(groups):
        item = PromptItem(key, key, {"question": f"q{key}", "answer": "1"}, [1, 2, key + 3], f"q{key}")
        members = []
        for i, v in enumerate(vectors):
            c = Completion(key, item.prompt_ids, [4 + i] * (2 + i), "x", [-0.5] * (2 + i), "stop", 0)
            members.append(Scored(c, float(sum(w[n] * x for n, x in zip(names, v) if w[n])), dict(zip(names, map(float, v))), None))
        out[key] = Group(item, members, pool_stats(members))
    return Batch.from_groups(out, w, temperature=1.0, max_new_tokens=8)


# ------------------------------------------------------------------ hypervolume (A.2.7)

A, B, C, D = (1, 3), (2, 2), (3, 1), (1.5, 1.5)


def test_hv1_two_objectives_and_the_meta_reward():
    assert hypervolume(np.array([A, B, C]), np.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(np.array([A, C]), np.zeros(2)) == pytest.approx(5.0)
    front, delta = add_to_front(np.array([A, C]), np.array(B), np.zeros(2))
    assert delta == pytest.approx(1.0) and len(front) == 3
    assert meta_reward(delta) == pytest.approx(1.6423912, abs=1e-6)


def test_hv2_a_dominated_point_adds_nothing():
    front, delta = add_to_front(np.array([A, B, C], dtype=float), np.array(D), np.zeros(2))
    assert delta == 0.0 and meta_reward(delta) == 0.5
    assert front.tolist() == [list(A), list(B), list(C)]


def test_hv3_three_objectives_mixed_directions_raw_units():
    maximize = [True, False, True]
    ref = oriented([0.80, 700, 0.90], maximize)
    front, d1 = add_to_front(np.zeros((0, 3)), oriented([0.82, 650, 0.95], maximize), ref)
    assert d1 == pytest.approx(0.05) and meta_reward(d1) == pytest.approx(0.5749376, abs=1e-6)
    front, d2 = add_to_front(front, oriented([0.85, 680, 0.92], maximize), ref)
    assert d2 == pytest.approx(0.012) and meta_reward(d2) == pytest.approx(0.5179991, abs=1e-6)
    assert hypervolume(front, ref) == pytest.approx(0.062)
    same, d3 = add_to_front(front, oriented([0.90, 720, 0.99], maximize), ref)  # longer than the reference
    assert d3 == 0.0 and meta_reward(d3) == 0.5 and np.array_equal(same, front)


def test_hv4_unit_scaling():
    maximize = [True, False]
    ref, point = [0.80, 700], [0.85, 600]
    raw = hypervolume(oriented([point], maximize), oriented(ref, maximize))
    assert raw == pytest.approx(5.0) and meta_reward(raw) == pytest.approx(1.9998638, abs=1e-6)
    scaled = hypervolume(oriented([point], maximize, [1, 1000]), oriented(ref, maximize, [1, 1000]))
    assert scaled == pytest.approx(0.005) and meta_reward(scaled) == pytest.approx(0.5074999, abs=1e-6)


def test_hv5_a_uniform_reward_scale_is_a_no_op_under_grpo_not_under_rloo():
    r, g = torch.tensor([1.0, 0.0, 0.5, 0.5]), torch.zeros(4, dtype=torch.long)
    assert grpo(r, g).tolist() == pytest.approx([1.2247449, -1.2247449, 0, 0], abs=1e-5)
    assert grpo(0.5 * r, g).tolist() == pytest.approx(grpo(r, g).tolist(), abs=1e-5)
    assert rloo(r, g).tolist() == pytest.approx([0.6666667, -0.6666667, 0, 0], abs=1e-6)
    assert rloo(0.5 * r, g).tolist() == pytest.approx([0.3333333, -0.3333333, 0, 0], abs=1e-6)


def _union_volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Inclusion-exclusion over every subset: the boxes' intersection is the box to their minimum."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = np.min(subset, axis=0)
            total += (-1) ** (k + 1) * float(np.prod(np.clip(corner - ref, 0, None)))
    return total


def test_hv6_agrees_with_inclusion_exclusion_on_random_fronts():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m, n = rng.choice([2, 3, 4]), rng.integers(1, 8)
        points, ref = rng.random((n, m)), rng.random(m) * 0.3
        assert hypervolume(points, ref) == pytest.approx(_union_volume(points, ref), abs=1e-9)


def test_points_not_above_the_reference_in_every_coordinate_count_zero():
    assert hypervolume(np.array([[2.0, -1.0], [0.0, 5.0]]), np.zeros(2)) == 0.0
    assert hypervolume(np.zeros((0, 2)), np.zeros(2)) == 0.0


def test_nondominated_keeps_the_first_of_equal_points():
    pts = np.array([[1, 3], [2, 2], [1, 2], [2, 2], [0, 4]], dtype=float)
    assert nondominated(pts).tolist() == [True, True, False, False, True]


# ------------------------------------------------------------------ gradient-based weights (A.3.5)

STEP = 1e-6 / 1e-5  # eta / mu


def _update(w, grads, clip=None):
    g = torch.tensor(grads, dtype=torch.float64)
    if clip is not None:
        g = clip_rows(g, clip)
    return exponentiated_update(torch.tensor(w, dtype=torch.float64), influence(g @ g.T), STEP)


def test_gw1_gw2_three_objectives():
    grads = [[1, 0], [-0.5, 0.5], [0.5, 0.5]]
    assert influence(torch.tensor(grads) @ torch.tensor(grads).T).tolist() == pytest.approx([1, 0, 1])
    once = _update([1 / 3] * 3, grads)
    assert once.tolist() == pytest.approx([0.3442534, 0.3114933, 0.3442534], abs=1e-7)
    assert _update(once.tolist(), grads).tolist() == pytest.approx([0.3547696, 0.2904608, 0.3547696], abs=1e-7)
    assert _update([0.334, 0.333, 0.333], grads).tolist() == pytest.approx([0.3449306, 0.3111716, 0.3438978], abs=1e-7)


def test_gw3_conflict_and_gw4_clipping():
    assert _update([0.5, 0.5], [[2, 0], [-1, 0.1]]).tolist() == pytest.approx([0.5741980, 0.4258020], abs=1e-7)
    g = clip_rows(torch.tensor([[3.0, 4.0], [0.0, 0.5]]), 1.0)
    assert g.flatten().tolist() == pytest.approx([0.6, 0.8, 0.0, 0.5])
    assert influence(g @ g.T).tolist() == pytest.approx([1.40, 0.65])
    assert _update([0.5, 0.5], [[3, 4], [0, 0.5]], clip=1.0).tolist() == pytest.approx([0.5187412, 0.4812588], abs=1e-7)


def test_gw5_sign_invariance_and_gw6_sharded_gram():
    g = torch.randn(3, 10, dtype=torch.float64)
    assert torch.allclose(influence(g @ g.T), influence((-g) @ (-g).T))
    shards = g[:, :4] @ g[:, :4].T + g[:, 4:] @ g[:, 4:].T
    assert torch.allclose(shards, g @ g.T)


class ScriptedLearner:
    """Returns given Gram matrices in turn (the learner's own method is tested on a model below)."""

    def __init__(self, grams: list[list[list[float]]]) -> None:
        self.grams = grams

    def call(self, method, batch, advantages, params, clip):
        assert method == "objective_gradients" and len(advantages) == len(self.grams[0])
        return {"gram": self.grams.pop(0), "lr": 1e-6, "seconds": 0.0, "bytes": 0}


def _gradient_step(stage: Gradient, learner, batch=None) -> Batch:
    batch = batch or mo_batch([[(1, 0), (0, 1)], [(0, 1), (1, 0)]], names=["a", "b"])
    ctx = StageContext(0, 10, learner, advantage=lambda r: grpo(r, batch.group_ids))
    stage(batch, ctx)
    return batch


def test_gw7_accumulation_updates_every_k_steps_with_the_mean():
    stage = Gradient(mu=1e-5, every=2)
    learner = ScriptedLearner([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])  # I = (1, 0) then (0, 1)
    first = _gradient_step(stage, learner)
    assert stage.current == {"a": 0.5, "b": 0.5} and stage.count == 1 and first.metrics["influence/a"] == 1.0
    _gradient_step(stage, learner)
    assert stage.count == 0 and stage.current["a"] == pytest.approx(0.5) and stage.current["b"] == pytest.approx(0.5)


def test_the_gradient_stage_uses_the_new_weights_for_this_steps_rewards():
    stage = Gradient(mu=1e-5)
    batch = _gradient_step(stage, ScriptedLearner([[[2.0, -1.0], [-1.0, 0.5]]]))  # I = (1, -0.5)
    w = exponentiated_update(torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([1.0, -0.5], dtype=torch.float64), 0.1)
    assert [stage.current["a"], stage.current["b"]] == pytest.approx(w.tolist())
    expected = batch.shaped.double() @ w
    assert batch.rewards.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert batch.metrics["weights/a"] == pytest.approx(float(w[0]), abs=1e-6)
    state = stage.state_dict()
    again = Gradient(mu=1e-5)
    again.load_state_dict(state)
    assert again.current == stage.current and again.count == stage.count


def test_objective_gradients_on_a_real_learner(tiny_model_path):
    """Opposite advantages give opposite gradients; clipping caps each norm; a regex picks a subset."""
    from rlpost.config import Config
    from rlpost.learner.learner import Learner

    learner = Learner(Config(), tiny_model_path)
    batch = mo_batch([[(1, 0), (0, 1), (1, 1)], [(0, 0), (1, 0), (0, 1)]], names=["a", "b"]).train_batch()
    adv = [1.0, -1.0, 0.5, 0.0, 1.0, -1.0]
    before = [p.detach().clone() for p in learner.model.parameters()]
    out = learner.objective_gradients(batch, [adv, [-a for a in adv], adv], clip=1e9)
    gram = torch.tensor(out["gram"])
    assert gram[0, 0] > 0 and gram[0, 1] == pytest.approx(-float(gram[0, 0]), rel=1e-4)
    assert gram[0, 2] == pytest.approx(float(gram[0, 0]), rel=1e-4) and torch.allclose(gram, gram.T)
    clipped = torch.tensor(learner.objective_gradients(batch, [adv], clip=1e-3)["gram"])
    assert clipped[0, 0] == pytest.approx(1e-6, rel=1e-3)  # |g| = 1e-3 over everything that trains
    subset = torch.tensor(learner.objective_gradients(batch, [adv], params=r"layers\.0\.", clip=1e9)["gram"])
    assert 0 < subset[0, 0] < gram[0, 0]
    assert all(torch.equal(a, p) for a, p in zip(before, learner.model.parameters()))  # nothing stepped
    assert all(p.grad is None for p in learner.model.parameters())
    with pytest.raises(ValueError, match="no trainable parameter name matches"):
        learner.objective_gradients(batch, [adv], params="nothing-like-this")


# ------------------------------------------------------------------ the hypervolume stage


class ScriptedValidation:
    """Greedy validation results in turn (the run's own validation is exercised in tests/test_multi_objective.py)."""

    def __init__(self, results: list[dict[str, float]]) -> None:
        self.results = results
        self.print = lambda text: None

    def validate(self, prompts: int) -> dict[str, float]:
        return self.results.pop(0)


def test_hypervolume_stage_follows_the_front_and_scales_the_next_step():
    stage = Hypervolume(objectives=["correctness", "mean_length"], minimize=["mean_length"])
    stage.check({"correctness": 1.0, "conciseness": 0.0})
    ctx = ScriptedValidation([
        {"reward/correctness": 0.80, "mean_length": 700},  # the reference
        {"reward/correctness": 0.85, "mean_length": 600},  # adds 0.05 x 100 = 5
        {"reward/correctness": 0.82, "mean_length": 650},  # dominated
    ])
    stage.on_start(ctx)
    assert stage.reference == [0.80, 700]
    batch = mo_batch([[(1, 0.5, 0), (0, 0.5, 0)]], weights=[1, 0, 0])
    stage(batch, StageContext(0, 10))
    assert batch.rewards.tolist() == [1.0, 0.0] and batch.metrics["hv/rho"] == 1.0  # rho = 1 at the first step
    m = stage.after_step(ctx)
    assert m["hv/delta"] == pytest.approx(5.0) and stage.rho == pytest.approx(1.9998638, abs=1e-6)
    assert m["val/mean_length"] == 600 and m["hv/front_size"] == 1.0
    stage(batch, StageContext(1, 10))
    assert batch.rewards.tolist() == pytest.approx([1.9998638, 0.0], abs=1e-6)
    assert stage.after_step(ctx)["hv/delta"] == 0.0 and stage.rho == 0.5
    restored = Hypervolume(objectives=["correctness", "mean_length"], minimize=["mean_length"])
    restored.load_state_dict(stage.state_dict())
    assert restored.front == [[0.85, 600]] and restored.rho == 0.5 and restored.reference == [0.80, 700]


def test_apply_to_advantage_scales_grpo_advantages_where_apply_to_reward_cannot(caplog):
    groups = [[(1, 0, 0), (0, 0, 0), (1, 1, 0), (0, 1, 1)]]
    runs = {}
    for apply_to in ("reward", "advantage"):
        algo = AlgoConfig(combiner={"name": "hypervolume", "kwargs": {"apply_to": apply_to, "reference": [0, 0, 0]}})
        pipeline = Pipeline.from_config(algo, {n: 1.0 for n in NAMES})
        pipeline.stages[0].run.rho = 2.0
        runs[apply_to] = pipeline(mo_batch(groups), StageContext(0, 10)).advantages
    plain = Pipeline.from_config(AlgoConfig(), {n: 1.0 for n in NAMES})(mo_batch(groups), StageContext(0, 10)).advantages
    assert torch.allclose(runs["reward"], plain, atol=1e-5)  # the caveat of A.2.4
    assert torch.allclose(runs["advantage"], 2.0 * plain, atol=1e-5)
    assert "normalises away" in caplog.text


@pytest.mark.parametrize("combiner, rewards, message", [
    ({"name": "fixed", "kwargs": {"weights": {"length": 1.0}}}, None, r"weights name \['length'\] but no reward produces them"),
    ({"name": "gradient", "kwargs": {"weights": {"correctness": -0.5, "format": 1.0}}}, None, "must be finite and >= 0"),
    ({"name": "gradient"}, {"correctness": 1.0, "format": -1.0}, "rewards' weights"),
    ({"name": "hypervolume", "kwargs": {"reference": [0.5, 3]}}, None, r"reference has 2 values for 3 objectives"),
    ({"name": "hypervolume", "kwargs": {"objectives": ["correctness", "speed"]}}, None, r"name \['speed'\], expected some of"),
    ({"name": "hypervolume", "kwargs": {"apply_to": "loss"}}, None, "apply_to must be reward or advantage"),
])
def test_bad_weights_and_references_are_one_line_errors(combiner, rewards, message):
    with pytest.raises(ConfigError, match=message) as e:
        Pipeline.from_config(AlgoConfig(combiner=combiner), rewards or {n: 1.0 for n in NAMES})
    assert "\n" not in str(e.value)


def test_fixed_weights_kwarg_replaces_the_rewards_weights_and_drops_rows_unknown_where_it_weighs():
    batch = mo_batch([[(1, 0.5, 1), (0, 0.25, float("nan"))]], weights=[1, 1, 0])
    algo = AlgoConfig(combiner={"name": "fixed", "kwargs": {"weights": {"conciseness": 2.0, "format": 1.0}}}, select=[])
    out = Pipeline.from_config(algo, {n: 1.0 for n in NAMES})(batch, StageContext(0, 10))
    assert out.rewards[0] == pytest.approx(2.0) and out.keep.tolist() == [True, False]
    assert out.metrics["combine/unknown_rows"] == 1.0
    assert math.isfinite(float(out.advantages[0]))


def test_the_gradient_stage_keeps_its_weights_when_no_row_is_known():
    batch = mo_batch([[(1, float("nan")), (0, float("nan"))]], names=["a", "b"], weights=[1, 0])
    stage = Gradient(weights={"a": 1.0, "b": 1.0})
    stage(batch, StageContext(0, 10, learner=None))  # no learner call: nothing to learn from
    assert stage.current == {"a": 0.5, "b": 0.5} and batch.keep.tolist() == [False, False]
