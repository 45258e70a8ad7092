"""``sampler: knapsack``: one round per step, rollouts per prompt from the Knapsack RL allocation
(``rlpost/algos/knapsack.py``) over per-prompt success rates of earlier visits (kept in checkpoints).
A prompt is its text: the same question at several rows of a dataset shares one history.

The step's total equals the uniform budget (``rollout.n`` x prompts) unless ``budget`` says otherwise.
Pair it with ``algo.post: [{name: adv_clip, kwargs: {limit: 5.0}}]``, as the paper does: a single
success in a large group gets a large normalised advantage.
"""
from __future__ import annotations

import math
from typing import Any

from rlpost.algos.knapsack import SOLVERS, PromptHistory, allocate_rollouts
from rlpost.rollout.samplers import SAMPLERS, Sampler
from rlpost.types import Group, PromptItem, Request, Scored, pool_stats


@SAMPLERS.register("knapsack")
class KnapsackSampler(Sampler):
    def __init__(
        self, n: int, budget: int | None = None, n_low: int = 2, n_up: int = 128, n_pos: int = 2, n_neg: int = 2,
        alpha: float = 0.9, cost_estimate: str = "probability", fallback: bool = True, solver: str = "greedy",
        min_history: int = 8, window: int = 16, epoch_estimation: bool = True, robust_estimation: bool = True,
        threshold: float = 0.5, cap_surplus: bool = False,
    ) -> None:
        super().__init__(n)
        for key, value, lo in (("n_low", n_low, 1), ("n_pos", n_pos, 0), ("n_neg", n_neg, 0), ("min_history", min_history, 1), ("window", window, 1)):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{key}={value!r}: expected an integer >= {lo}")
        if not isinstance(n_up, int) or n_up < n_low:
            raise ValueError(f"n_up={n_up!r}: expected an integer >= n_low ({n_low})")
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ValueError(f"budget={budget!r}: expected a positive integer (rollouts per step) or null for rollout.n x prompts")
        for key, value in (("alpha", alpha), ("threshold", threshold)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0 or (key == "alpha" and value in (0.0, 1.0)):
                raise ValueError(f"{key}={value!r}: expected a number in {'(0, 1)' if key == 'alpha' else '[0, 1]'}")
        if cost_estimate not in ("probability", "expectation"):
            raise ValueError(f"cost_estimate={cost_estimate!r}: expected 'probability' or 'expectation'")
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r}: expected one of {', '.join(SOLVERS)}")
        self.budget, self.threshold = budget, float(threshold)
        self.options = dict(n_low=n_low, n_up=n_up, n_pos=n_pos, n_neg=n_neg, alpha=alpha, cost_estimate=cost_estimate,
                            fallback=fallback, solver=solver, cap_surplus=cap_surplus)
        self.history = PromptHistory(min_history, window, epoch_estimation, robust_estimation)
        self.last: dict[str, float] = {}

    def check(self, prompts_per_step: int) -> None:
        """Every prompt may need its class minimum at once (new: rollout.n): the budget must cover that."""
        total = self.budget if self.budget is not None else self.n * prompts_per_step
        mins = {"rollout.n": self.n, **{f"sampler.kwargs.{k}": self.options[k] for k in ("n_low", "n_pos", "n_neg")}}
        key = max(mins, key=mins.get)
        if mins[key] * prompts_per_step > total:
            where = f"sampler.kwargs.budget={self.budget}" if self.budget is not None else f"the uniform budget {total} (rollout.n x prompts)"
            raise ValueError(f"{key}={mins[key]} x train.prompts_per_step={prompts_per_step} = {mins[key] * prompts_per_step} "
                             f"rollouts is above {where}: the minimum budgets cannot be met")

    def plan(self, items: list[PromptItem]) -> list[Request]:
        stats = [self.history.estimate(it.prompt_text) for it in items]
        total = self.budget if self.budget is not None else self.n * len(items)
        alloc, info = allocate_rollouts(stats, self.n, total, **self.options)
        self.last = {k: v for k, v in info.items() if k not in ("max", "min")}  # rollout/samples_per_prompt_* say these
        return [it.request(k) for it, k in zip(items, alloc) if k > 0]

    def finish(self, items: list[PromptItem], members: dict[int, list[Scored]]) -> dict[int, Group]:
        groups, visits = {}, {}
        for it in items:
            ms = members[it.key]
            # a question at several rows of this step is one visit
            visits.setdefault(it.prompt_text, []).extend(int(s.reward > self.threshold) for s in ms if not math.isnan(s.reward))
            if ms:
                groups[it.key] = Group(it, ms, pool_stats(ms, self.threshold))
        for prompt, outcomes in visits.items():
            self.history.update(prompt, outcomes)
        return groups

    def metrics(self) -> dict[str, float]:
        return dict(self.last)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.load_state_dict(state["history"])
