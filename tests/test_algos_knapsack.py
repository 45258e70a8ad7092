"""Knapsack RL: the spec's hand-computed numbers (shared/specs/unlikeliness_and_knapsack.md, 2.6),
the sampler's allocation, history and checks, and a behaviour test that fails with allocation off."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from rlpost.algos.advantages import AdvClip, grpo
from rlpost.algos.knapsack import (
    Estimate, PromptHistory, allocate_rollouts, info_gain, marginal_gain, nonzero_prob, rollout_cost, solve_dp,
    solve_greedy, task_value,
)
from rlpost.algos.stage import StageContext
from rlpost.rollout.knapsack import KnapsackSampler
from rlpost.rollout.samplers import SAMPLERS
from tests.batches import make_batch
from tests.fake_rollouts import items, scored

V = Estimate


def test_k1_value_function():
    assert task_value(8, 0.5) == pytest.approx(0.1240234375, abs=1e-12)
    assert task_value(2, 0.5) == pytest.approx(0.0625)
    assert info_gain(1 / 3) == pytest.approx(4 / 27)
    assert nonzero_prob(8, 0.1) == pytest.approx(0.569533, abs=1e-6)
    assert task_value(8, 0.1) == pytest.approx(0.046132, abs=1e-6)
    assert task_value(5, 0.0) == task_value(5, 1.0) == 0.0


def test_k2_marginal_gains_halve_at_one_half():
    assert [marginal_gain(n, 0.5) for n in range(2, 6)] == pytest.approx([0.03125, 0.015625, 0.0078125, 0.00390625])
    for n in range(2, 8):
        assert marginal_gain(n, 0.3) == pytest.approx(task_value(n + 1, 0.3) - task_value(n, 0.3))


def test_k3_cost_estimates():
    assert rollout_cost(0.01, "expectation") == pytest.approx(100.0101, abs=1e-4)
    assert rollout_cost(0.01, "probability", 0.9) == pytest.approx(229.105, abs=1e-3)
    assert rollout_cost(0.5, "expectation") == pytest.approx(3.0)
    assert rollout_cost(0.5) == pytest.approx(3.3219, abs=1e-4)
    for est, want in (("expectation", 5.25), ("probability", 10.3189)):
        assert rollout_cost(0.2, est) == pytest.approx(want, abs=1e-4) == rollout_cost(0.8, est)


def brute_force(ps, n_low, n_up, extra):
    best, arg = -1.0, None
    for alloc in itertools.product(range(n_low, n_up + 1), repeat=len(ps)):
        if sum(alloc) == n_low * len(ps) + extra:
            v = sum(task_value(n, p) for n, p in zip(alloc, ps))
            if v > best + 1e-15:
                best, arg = v, list(alloc)
    return arg, best


def test_k4_greedy_dp_and_brute_force_agree():
    ps = [0.5, 0.2, 0.05, 0.8]
    assert solve_greedy(ps, 2, 32, 24) == solve_dp(ps, 2, 32, 24) == [7, 13, 6, 6]
    arg, best = brute_force(ps, 2, 32, 24)
    assert arg == [7, 13, 6, 6] and best == pytest.approx(0.2795733, abs=1e-7)
    alloc, info = allocate_rollouts([V(True, p, 8) for p in ps], 8, 32, n_up=32)
    assert alloc == [7, 13, 6, 6] and info["surplus"] == 0  # needs 3 + 10 + 32 + 10 = 55 >= R = 24


def test_k5_estimator():
    h = PromptHistory()
    h.update(0, [1, 1, 1, 0, 0, 0, 0, 0])
    assert h.estimate(0) == (True, 0.375, 8)
    h.update(0, [1, 1])  # a short last visit: the robust window reads 10 outcomes across visits
    assert h.estimate(0).p_hat == pytest.approx(0.5)
    h = PromptHistory()
    for visit in ([1, 0, 1, 0, 1, 0, 1, 0], [1] * 8, [0, 0]):
        h.update(1, visit)
    assert h.estimate(1).p_hat == pytest.approx(11 / 16)
    h = PromptHistory()
    h.update(2, [0] * 8)
    h.update(2, [1] + [0] * 39)  # the last visit has >= 16 outcomes: it alone
    assert h.estimate(2) == (True, 0.025, 48)
    assert PromptHistory().estimate(3) == (False, 0.0, 0)
    short = PromptHistory()
    short.update(4, [1] * 7)
    assert not short.estimate(4).valid  # below min_history


def test_k5_history_keeps_only_what_the_estimate_reads_and_round_trips():
    h = PromptHistory()
    for _ in range(10):
        h.update(0, [1, 0, 1, 0, 1, 0, 1, 0])
    assert sum(len(v) for v in h.visits[0]) <= 16 + 8 and h.counts[0] == 80
    h2 = PromptHistory()
    h2.load_state_dict(h.state_dict())
    assert h2.estimate(0) == h.estimate(0) and h2.recent(0) == h.recent(0)


def test_k6_full_allocation_with_surplus():
    stats = [V(True, 0.5, 8), V(True, 0.1, 8), V(True, 1.0, 8), V(True, 0.0, 8), V(False, 0.0, 0)]
    alloc, info = allocate_rollouts(stats, 8, 40, n_low=2, n_pos=2, n_neg=2, n_up=16, alpha=0.9)
    assert alloc == [7, 16, 2, 7, 8] and sum(alloc) == 40
    assert info["surplus"] == 5 and info["prompts_effective"] == 2
    assert allocate_rollouts(stats, 8, 40, n_up=16, solver="dp")[0] == alloc


def test_k7_k8_no_effective_prompts_and_all_new():
    st = [V(True, 0.0, 8)] * 2 + [V(True, 1.0, 8)] * 2
    assert allocate_rollouts(st, 8, 32)[0] == [14, 14, 2, 2]
    assert allocate_rollouts(st, 8, 33)[0] == [15, 14, 2, 2]
    assert allocate_rollouts([V(False, 0.0, 0)] * 5, 8)[0] == [8] * 5


def test_the_surplus_passes_n_up_as_in_the_reference_unless_capped():
    """One never-solved prompt among solved ones: the reference gives it most of the budget."""
    stats = [V(True, 0.0, 8)] + [V(True, 1.0, 8)] * 30 + [V(True, 0.5, 8)]
    ref, _ = allocate_rollouts(stats, 8, 256, n_up=64)
    assert ref[0] == 191 and ref[-1] == 5 and sum(ref) == 256  # need of p=0.5 is 3 < 194 extra
    capped, info = allocate_rollouts(stats, 8, 256, n_up=64, cap_surplus=True)
    assert sum(capped) == 256 and info["surplus"] == 62  # 62 to reach n_up, the rest back to the optimiser
    assert capped[0] == capped[-1] == 64 and max(capped) == 64  # the optimiser's cap binds too: the rest to the others
    # no effective prompt at all: the same, through the other branch
    only = [V(True, 0.0, 8)] + [V(True, 1.0, 8)] * 31
    assert allocate_rollouts(only, 8, 256, n_up=64)[0][0] == 194
    capped, info = allocate_rollouts(only, 8, 256, n_up=64, cap_surplus=True)
    assert sum(capped) == 256 and capped[0] == 69 and info["surplus"] == 192  # 64, then 130 spread over all 32 (5 to the first two)
    assert allocate_rollouts([V(True, 0.5, 8), V(True, 0.1, 8), V(True, 1.0, 8), V(True, 0.0, 8), V(False, 0.0, 0)], 8, 40,
                             n_up=16, cap_surplus=True)[0] == [7, 16, 2, 7, 8]  # K6: no cap binds, same answer


def test_what_capped_effective_prompts_cannot_take_stays_with_them_as_in_the_reference():
    stats = [V(True, 1.0, 8)] * 3 + [V(True, 0.5, 8)]
    assert allocate_rollouts(stats, 8, 32, n_up=16, fallback=False)[0] == [2, 2, 2, 26]
    assert allocate_rollouts(stats, 8, 32, n_up=16, fallback=False, cap_surplus=True)[0] == [6, 5, 5, 16]
    every = [V(True, 0.5, 8), V(True, 0.2, 8)]  # all effective: no surplus step, the optimiser gets everything
    alloc, info = allocate_rollouts(every, 8, 16, n_up=16)
    assert sum(alloc) == 16 and info["surplus"] == 0 and info["optimised"] == 12
    assert allocate_rollouts([], 8) == ([], {"prompts_new": 0.0, "prompts_solved": 0.0, "prompts_unsolved": 0.0,
                                             "prompts_effective": 0.0, "surplus": 0.0, "optimised": 0.0})


def test_k9_infeasible_budget_raises():
    with pytest.raises(ValueError, match="budget of 30 rollouts cannot give 4 prompts their minimum"):
        allocate_rollouts([V(False, 0.0, 0)] * 4, 8, 30)


def test_k10_large_group_advantage_and_the_clip():
    r = torch.tensor([1.0] + [0.0] * 92)
    a = grpo(r, torch.zeros(93, dtype=torch.long))
    assert float(a[0]) == pytest.approx(9.5399, abs=1e-4) and float(a[1]) == pytest.approx(-0.1037, abs=1e-4)
    batch = make_batch([[1.0] + [0.0] * 92, [1.0] + [0.0] * 7])
    batch.rewards = batch.raw_rewards
    batch.advantages = grpo(batch.rewards, batch.group_ids)
    AdvClip(5.0)(batch, StageContext(0, 1))
    assert float(batch.advantages[0]) == 5.0 and float(batch.advantages[1]) == pytest.approx(-0.1037, abs=1e-4)
    assert float(batch.advantages[93]) == pytest.approx(2.4749, abs=1e-4) and float(batch.advantages[94]) == pytest.approx(-0.3536, abs=1e-4)
    with pytest.raises(ValueError, match="limit must be > 0"):
        AdvClip(0.0)


def test_k11_gains_are_concave_and_greedy_matches_dp():
    rng = random.Random(0)
    for _ in range(50):
        p = rng.uniform(0.01, 0.99)
        gains = [marginal_gain(n, p) for n in range(2, 200)]
        assert all(g > 0 for g in gains if g > 1e-300) and all(a >= b for a, b in zip(gains, gains[1:]))
    for _ in range(30):
        ps = [rng.uniform(0.02, 0.98) for _ in range(rng.randint(1, 5))]
        extra = rng.randint(0, 20)
        obj = lambda alloc: sum(task_value(n, p) for n, p in zip(alloc, ps))  # noqa: E731
        g, d = solve_greedy(ps, 2, 10, extra), solve_dp(ps, 2, 10, extra)
        assert sum(g) == sum(d) and obj(g) == pytest.approx(obj(d), abs=1e-12)


def expected_nonzero_share(alloc, ps):
    """Expected share of samples in groups with both outcomes (the sample-level metric)."""
    return sum(n * nonzero_prob(n, p) for n, p in zip(alloc, ps)) / sum(alloc)


def test_k12_sample_level_share_rises_prompt_level_falls():
    ps = [0.5, 0.2, 0.05, 0.8]
    assert expected_nonzero_share([8] * 4, ps) == pytest.approx(0.7483, abs=1e-4)
    assert expected_nonzero_share([7, 13, 6, 6], ps) == pytest.approx(0.7873, abs=1e-4)
    assert np.mean([nonzero_prob(n, p) for n, p in zip([7, 13, 6, 6], ps)]) == pytest.approx(0.7330, abs=1e-4)


# ------------------------------------------------------------------ the sampler


def test_the_sampler_allocates_from_history_and_keeps_the_budget():
    s = SAMPLERS.get("knapsack")(n=8, n_up=16)
    its = items(5)
    assert [r.n for r in s.plan(its)] == [8] * 5  # all new: uniform
    outcomes = {0: [1, 0] * 4, 1: [1] + [0] * 7, 2: [1] * 8, 3: [0] * 8, 4: [1, 1, 0, 0, 0, 0, 0, 0]}
    groups = s.finish(its, {k: scored(k, v) for k, v in outcomes.items()})
    assert [len(g.members) for g in groups.values()] == [8] * 5 and groups[1].stats["positive"] == 1
    alloc = {r.key: r.n for r in s.plan(its)}
    assert sum(alloc.values()) == 40 and alloc[2] == 2 and alloc[3] > 2  # solved: n_pos; unsolved takes the surplus
    assert s.metrics()["prompts_effective"] == 3 and "max" not in s.metrics()  # rollout/samples_per_prompt_max says it
    s2 = KnapsackSampler(n=8, n_up=16)
    s2.load_state_dict(s.state_dict())
    assert {r.key: r.n for r in s2.plan(its)} == alloc


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": 30}, "budget=30 is below|minimum budgets cannot be met"),
    ({"n_low": 9}, "n_up=128|n_low=9 x"),
    ({"threshold": 1.5}, r"threshold=1.5: expected a number in \[0, 1\]"),
    ({"alpha": 1.0}, r"alpha=1.0: expected a number in \(0, 1\)"),
    ({"n_up": 1}, "n_up=1: expected an integer >= n_low"),
    ({"solver": "lp"}, "solver='lp'"),
])
def test_bad_options_fail_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KnapsackSampler(n=8, **kwargs).check(4)


def test_behaviour_allocation_raises_the_share_of_useful_samples():
    """Simulated prompts with fixed success rates, five visits each: Knapsack's sample-level share of
    groups with both outcomes beats uniform by >= 20% (relative); with the allocation replaced by
    uniform the two are equal, so this fails if the method is switched off."""
    rng = np.random.default_rng(0)
    true_p = np.concatenate([np.full(24, 0.97), np.full(16, 0.03), rng.uniform(0.1, 0.9, 24)])
    shares = {}
    for name in ("uniform", "knapsack"):
        s = SAMPLERS.get(name)(n=8)
        useful = total = 0
        for epoch in range(5):
            its = items(len(true_p))
            reqs = s.plan(its)
            members = {it.key: [] for it in its}
            for r in reqs:
                members[r.key] = scored(r.key, (rng.random(r.n) < true_p[r.key]).astype(int).tolist())
            s.finish(its, members)
            if epoch > 0:  # after the first visit, when Knapsack has estimates
                for ms in members.values():
                    ok = {m.reward for m in ms}
                    useful += len(ms) if ok == {0.0, 1.0} else 0
                    total += len(ms)
        shares[name] = useful / total
    assert shares["knapsack"] >= 1.2 * shares["uniform"], shares
