"""``sampler: reinforce_ada``: rounds of ``round_size`` samples for the prompts still active, up to
``max_rounds``; a prompt retires once its pool passes the exit rule (``balanced``: n/2 correct and
n/2 incorrect; ``positive``: one correct). Each prompt then keeps a group of ``rollout.n`` members,
balanced between correct and incorrect (``rlpost/algos/reinforce_ada.py``), and its group carries
the whole pool's statistics for the ``global_baseline`` advantage stage.

Every round of a step samples from the same weights: the controller syncs only after the update.
"""
from __future__ import annotations

import math
from typing import Any

from rlpost.algos.reinforce_ada import RULES, exit_ok, pick_group
from rlpost.rollout.samplers import SAMPLERS, Sampler
from rlpost.types import Group, PromptItem, Request, Scored, pool_stats


@SAMPLERS.register("reinforce_ada")
class ReinforceAdaSampler(Sampler):
    def __init__(self, n: int, variant: str = "balanced", round_size: int = 8, max_rounds: int = 4, threshold: float = 0.7) -> None:
        super().__init__(n)
        if variant not in RULES:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(RULES)}")
        for key, value in (("round_size", round_size), ("max_rounds", max_rounds)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r}: expected an integer >= 1")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold={threshold!r}: expected a number in [0, 1] (a reward above it counts as correct)")
        self.variant, self.round_size, self.max_rounds, self.threshold = variant, round_size, max_rounds, float(threshold)
        self.rounds = 0
        self.retired: dict[int, int] = {}  # prompt key -> round it retired in (1-based)
        self.first_round_mean = math.nan
        self.prompts = 0

    def plan(self, items: list[PromptItem]) -> list[Request]:
        self.rounds, self.retired, self.first_round_mean = 1, {}, math.nan
        return self._requests(items)

    def _requests(self, items: list[PromptItem]) -> list[Request]:
        return [it.request(self.round_size) for it in items if it.key not in self.retired]

    def _sides(self, members: list[Scored]) -> tuple[list[int], list[int]]:
        """Indices of the positive and negative members with a known reward, in generation order."""
        pos = [i for i, s in enumerate(members) if not math.isnan(s.reward) and s.reward > self.threshold]
        neg = [i for i, s in enumerate(members) if not math.isnan(s.reward) and s.reward <= self.threshold]
        return pos, neg

    def next_round(self, items: list[PromptItem], members: dict[int, list[Scored]]) -> list[Request]:
        if self.rounds == 1:
            known = [s.reward for it in items for s in members[it.key] if not math.isnan(s.reward)]
            self.first_round_mean = sum(known) / len(known) if known else math.nan
        for it in items:
            if it.key not in self.retired:
                pos, neg = self._sides(members[it.key])
                if exit_ok(len(pos), len(neg), self.n, self.variant):
                    self.retired[it.key] = self.rounds
        if self.rounds >= self.max_rounds:
            return []
        self.rounds += 1
        return self._requests(items)

    def finish(self, items: list[PromptItem], members: dict[int, list[Scored]]) -> dict[int, Group]:
        groups = {}
        for it in items:
            ms = members[it.key]
            pos, neg = self._sides(ms)
            kept = pick_group(pos, neg, self.n, self.variant, retired=it.key in self.retired)
            if kept:
                groups[it.key] = Group(it, [ms[i] for i in sorted(kept)], pool_stats(ms, self.threshold))
        self.prompts = len(items)
        return groups

    def metrics(self) -> dict[str, float]:
        out = {f"retired_round{t}": float(sum(r == t for r in self.retired.values())) for t in range(1, self.max_rounds + 1)}
        out["unresolved"] = float(self.prompts - len(self.retired))
        out["round1_reward_mean"] = self.first_round_mean
        return out
