"""Samplers decide how many completions each prompt gets, possibly over several rounds.

Contract: `plan(items)` gives the first round's requests; after each round the controller
scores the completions and calls `next_round(items, members)`, which returns more requests
(or none); `finish(items, members)` closes the step and returns the groups that go on to the
pipeline, each with statistics of its whole pool (a sampler may keep fewer samples than it drew);
`metrics()` then says what the sampler decided this step (logged under ``sampler/``).
`check(prompts_per_step)` runs at start-up, before any model loads: raise ValueError for settings
that cannot work. Samplers with state across steps define `state_dict` / `load_state_dict`.

Built in: ``uniform`` (here), ``knapsack`` (rlpost/rollout/knapsack.py), ``reinforce_ada``
(rlpost/rollout/reinforce_ada.py).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rlpost.registry import Registry
from rlpost.types import Group, PromptItem, Request, Scored, pool_stats  # noqa: F401 (PromptItem, Scored: old checkpoints pickled them here)

SAMPLERS: Registry = Registry("sampler", builtins_module=("rlpost.rollout.knapsack", "rlpost.rollout.reinforce_ada"))


class Sampler:
    """Base: uniform n samples per prompt, one round; every sample is kept."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"sampler got unknown options: {sorted(kwargs)}")
        self.n = n

    def check(self, prompts_per_step: int) -> None:
        pass

    def plan(self, items: list[PromptItem]) -> list[Request]:
        return [it.request(self.n) for it in items]

    def next_round(self, items: list[PromptItem], members: dict[int, list[Scored]]) -> list[Request]:
        return []

    def finish(self, items: list[PromptItem], members: dict[int, list[Scored]]) -> dict[int, Group]:
        return {it.key: Group(it, members[it.key], pool_stats(members[it.key])) for it in items}

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def samples_in_rounds(sampler: Sampler) -> bool:
    """True when the sampler may ask for more samples after reading a round's rewards."""
    return type(sampler).next_round is not Sampler.next_round


def finish_step(
    sampler: Sampler, items: list[PromptItem], members: dict[int, list[Scored]], metrics: dict[str, float]
) -> tuple[dict[int, Group], dict[str, float]]:
    """Close a step's sampling: the sampler's groups, and the metrics with what it drew per prompt and
    what it decided (``sampler/...``) added."""
    groups = sampler.finish(items, members)
    metrics.update(pool_metrics(members))
    metrics.update({f"sampler/{k}": v for k, v in getattr(sampler, "metrics", dict)().items()})
    return groups, metrics


def pool_metrics(members: dict[int, list[Scored]]) -> dict[str, float | list[float]]:
    """Completions drawn per prompt this step (before a sampler keeps some): total, mean, max and the
    list itself (a histogram in tensorboard)."""
    drawn = [float(len(ms)) for ms in members.values()]
    return {
        "rollout/generated": float(sum(drawn)), "rollout/samples_per_prompt_mean": float(np.mean(drawn)) if drawn else 0.0,
        "rollout/samples_per_prompt_max": max(drawn, default=0.0), "rollout/samples_per_prompt": drawn,
    }


SAMPLERS.register("uniform")(Sampler)
