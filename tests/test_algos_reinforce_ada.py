"""Reinforce-Ada: the spec's hand-computed examples (shared/specs/reinforce_ada_and_d3s.md, 1.6) run
through the real sampler with scripted rewards, the global baseline, and a behaviour test."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpost.algos.aggregation import AGGREGATIONS
from rlpost.algos.reinforce_ada import exit_ok, global_baseline, pick_group
from rlpost.algos.stage import STAGES, StageContext
from rlpost.rollout.reinforce_ada import ReinforceAdaSampler
from rlpost.rollout.samplers import SAMPLERS
from rlpost.types import Batch
from tests.fake_rollouts import items, scored

ROUNDS = {  # prompt -> rewards of rounds 1..4 (M = 8); a prompt that retired is never asked again
    "A": [[1, 0, 0, 1, 0, 0, 0, 0]],
    "B": [[1] * 8, [1, 1, 1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 1], [1] * 8],
    "C": [[0] * 8] * 4,
    "D": [[0] * 8, [0, 0, 0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0], [0] * 8],
}
NAMES = list(ROUNDS)


def run_rounds(sampler: ReinforceAdaSampler):
    """The controller's loop with scripted rewards: returns groups, active keys per round, samples drawn."""
    its = items(4)
    members = {it.key: [] for it in its}
    requests, active, drawn = sampler.plan(its), [], 0
    while requests:
        active.append({NAMES[r.key] for r in requests})
        for r in requests:
            t = len(members[r.key]) // 8
            members[r.key] += scored(r.key, ROUNDS[NAMES[r.key]][t], start=8 * t)
            drawn += r.n
        requests = sampler.next_round(its, members)
    return sampler.finish(its, members), active, drawn


def kept(group) -> list[str]:
    """Kept members as r<round>[<index>] labels, e.g. r2[5]."""
    return sorted(f"r{s.completion.token_ids[0] // 8 + 1}[{s.completion.token_ids[0] % 8}]" for s in group.members)


def advantages(groups, std=False) -> dict[str, list[float]]:
    batch = Batch.from_groups(groups, {"correctness": 1.0}, 1.0, 8)
    batch.rewards = batch.raw_rewards
    STAGES.get("global_baseline")(batch, StageContext(0, 1), std=std)
    out: dict[str, list[float]] = {}
    for g, a in zip(batch.group_ids.tolist(), batch.advantages.tolist()):
        out.setdefault(NAMES[g], []).append(a)
    return out


def test_balanced_rule_hand_example():
    groups, active, drawn = run_rounds(ReinforceAdaSampler(n=4, variant="balanced", round_size=8, max_rounds=4, threshold=0.7))
    assert active == [set("ABCD"), set("BCD"), set("BCD"), {"C"}]
    assert drawn == 88  # 32 + 24 + 24 + 8, of at most 128
    assert kept(groups[0]) == ["r1[0]", "r1[1]", "r1[2]", "r1[3]"]
    assert kept(groups[1]) == ["r1[0]", "r1[1]", "r2[3]", "r3[6]"]
    assert kept(groups[2]) == ["r1[0]", "r1[1]", "r1[2]", "r1[3]"]
    assert kept(groups[3]) == ["r1[0]", "r1[1]", "r2[5]", "r3[0]"]
    assert sum(len(g.members) for g in groups.values()) == 16
    pools = {NAMES[k]: (g.stats["positive"], g.stats["count"] - g.stats["positive"]) for k, g in groups.items()}
    assert pools == {"A": (2, 6), "B": (22, 2), "C": (0, 32), "D": (2, 22)}
    adv = advantages(groups)
    assert sorted(adv["A"]) == pytest.approx([-0.25, -0.25, 0.75, 0.75])
    assert sorted(adv["B"]) == pytest.approx([-11 / 12, -11 / 12, 1 / 12, 1 / 12], abs=1e-5)
    assert adv["C"] == [0.0] * 4
    assert sorted(adv["D"]) == pytest.approx([-1 / 12, -1 / 12, 11 / 12, 11 / 12], abs=1e-5)


def test_positive_rule_hand_example():
    sampler = ReinforceAdaSampler(n=4, variant="positive", round_size=8, max_rounds=4, threshold=0.7)
    groups, active, drawn = run_rounds(sampler)
    assert drawn == 64 and active == [set("ABCD"), {"C", "D"}, {"C"}, {"C"}]
    assert kept(groups[1]) == ["r1[0]", "r1[1]", "r1[2]", "r1[3]"]  # all positive
    assert kept(groups[3]) == ["r1[0]", "r1[1]", "r1[2]", "r2[5]"]
    adv = advantages(groups)
    assert sorted(adv["A"]) == pytest.approx([-0.25, -0.25, 0.75, 0.75])
    assert adv["B"] == [0.0] * 4 and adv["C"] == [0.0] * 4
    assert sorted(adv["D"]) == pytest.approx([-0.0625] * 3 + [0.9375])
    m = sampler.metrics()
    assert (m["retired_round1"], m["retired_round2"], m["unresolved"]) == (2, 1, 1)


def test_std_variant_and_small_pools():
    r = torch.tensor([1.0, 0.0])
    counts, sums = torch.tensor([8.0, 8.0]), torch.tensor([2.0, 2.0])
    a = global_baseline(r, counts, sums, sums, std=True)
    assert a.tolist() == pytest.approx([1.6202, -0.5401], abs=1e-4)
    one = global_baseline(torch.tensor([1.0]), torch.ones(1), torch.ones(1), torch.ones(1), std=True)
    assert one.tolist() == pytest.approx([1.0 / (1 + 1e-6)])  # a pool of one: mu 0, sigma 1


def test_fallback_partly_satisfied_and_odd_n():
    pos, neg = list(range(31)), [31]
    assert pick_group(pos, neg, 4, "balanced", retired=False) == [0, 1, 2, 31]  # mu = 31/32
    a = global_baseline(torch.tensor([1.0, 0.0]), torch.tensor([32.0] * 2), torch.tensor([31.0] * 2), torch.tensor([31.0] * 2))
    assert a.tolist() == pytest.approx([0.03125, -0.96875])
    assert pick_group([0, 1, 2, 3], [4, 5, 6], 5, "balanced", retired=True) == [0, 1, 4, 5, 6]  # floor(5/2) positives
    assert exit_ok(2, 3, 5, "balanced") and not exit_ok(2, 2, 5, "balanced")
    assert pick_group([], [0, 1], 4, "positive", retired=False) == [0, 1]  # M < n: a ragged group
    assert pick_group([3], list(range(3)) + list(range(4, 8)), 4, "positive", retired=False) == [3, 0, 1, 2]


def test_loss_aggregation_check():
    """Two kept responses, +0.75 (3 tokens) and -0.25 (5 tokens), ratios 1: token-mean loss -0.125."""
    adv = torch.tensor([[0.75] * 5, [-0.25] * 5])
    mask = torch.tensor([[1.0] * 3 + [0.0] * 2, [1.0] * 5])
    loss = AGGREGATIONS.get("token-mean")(-adv, mask)
    assert float(loss) == pytest.approx(-0.125)


@pytest.mark.parametrize("kwargs, match", [
    ({"variant": "both"}, "variant='both'"), ({"max_rounds": 0}, "max_rounds=0: expected an integer >= 1"),
    ({"round_size": 0}, "round_size=0"), ({"threshold": -0.1}, r"threshold=-0.1: expected a number in \[0, 1\]"),
])
def test_bad_options_fail_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReinforceAdaSampler(n=4, **kwargs)


def test_behaviour_more_groups_carry_signal_than_uniform():
    """Simulated prompts with fixed success rates, n = 4: adaptive rounds + the global baseline give
    far more groups with a non-zero advantage than uniform GRPO; with one round and no exit (the
    method off) they would match."""
    rng = np.random.default_rng(0)
    true_p = np.concatenate([np.full(20, 0.95), np.full(20, 0.08), rng.uniform(0.2, 0.8, 24)])
    fracs = {}
    for name, stage in (("uniform", "grpo"), ("reinforce_ada", "global_baseline")):
        s = SAMPLERS.get(name)(n=4)
        its = items(len(true_p))
        members = {it.key: [] for it in its}
        reqs = s.plan(its)
        while reqs:
            for r in reqs:
                members[r.key] += scored(r.key, (rng.random(r.n) < true_p[r.key]).astype(int).tolist(), start=len(members[r.key]))
            reqs = s.next_round(its, members)
        batch = Batch.from_groups(s.finish(its, members), {"correctness": 1.0}, 1.0, 8)
        batch.rewards = batch.raw_rewards
        STAGES.get(stage)(batch, StageContext(0, 1))
        nonzero = {g for g, a in zip(batch.group_ids.tolist(), batch.advantages.tolist()) if abs(a) > 1e-8}
        fracs[name] = len(nonzero) / len(its)
    assert fracs["reinforce_ada"] >= fracs["uniform"] + 0.2, fracs
