"""Rewards: ``fn(prompts, completions, facts, **kwargs) -> list[float]`` per completion.

``facts[i]`` is ``{verifier_name: facts}`` for completion ``i`` (see ``verifiers``); ``kwargs`` hold
every dataset column as a list aligned with the completions, ``completion_ids``, and the reward's
own parameters from the recipe. NaN means "unknown" (e.g. the verifier failed), never a silent 0.

A reward sees the completions of one scoring call: one sampling round (or one streamed part) of a
step. A reward that compares completions across a group or the batch says so with a ``locality``
attribute (``"group"``, ``"cohort"`` or ``"batch"``; default ``"row"``), and the run refuses the
samplers and streaming that would show it a partial group.
"""
from rewards.combine import weighted_sum
from rewards.compute import RewardResult, RewardSpec, compute_rewards, resolve_rewards, reward_locality
from rewards.registry import REWARDS

__all__ = ["REWARDS", "RewardResult", "RewardSpec", "compute_rewards", "resolve_rewards", "reward_locality", "weighted_sum"]
