"""Samplers decide how many completions each prompt gets, possibly over several rounds.

Contract: `plan(items)` gives the first round's requests; after each round the controller
scores the completions and calls `next_round(items, groups)`, which returns more requests
(or none); `observe(items, groups)` closes the step (history for budget allocators).
Knapsack budgets and Reinforce-Ada's adaptive rounds plug in here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlpost.registry import Registry
from rlpost.types import Completion, Request

SAMPLERS: Registry = Registry("sampler")


@dataclass
class PromptItem:
    key: int  # position in this step's batch
    index: int  # position in the dataset
    record: dict[str, Any]
    prompt_ids: list[int]
    prompt_text: str


@dataclass
class Scored:
    completion: Completion
    reward: float  # combined scalar; NaN when a verifier/reward failed (dropped, counted)
    objectives: dict[str, float]
    correct: bool | None


class Sampler:
    """Base: uniform n samples per prompt, one round."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"sampler got unknown options: {sorted(kwargs)}")
        self.n = n

    def plan(self, items: list[PromptItem]) -> list[Request]:
        return [Request(prompt_ids=it.prompt_ids, n=self.n, key=it.key) for it in items]

    def next_round(self, items: list[PromptItem], groups: dict[int, list[Scored]]) -> list[Request]:
        return []

    def observe(self, items: list[PromptItem], groups: dict[int, list[Scored]]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


SAMPLERS.register("uniform")(Sampler)
