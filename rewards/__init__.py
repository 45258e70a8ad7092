"""Rewards: ``fn(prompts, completions, facts, **kwargs) -> list[float]`` per completion, and combiners.

``facts[i]`` is ``{verifier_name: facts}`` for completion ``i`` (see ``verifiers``); ``kwargs`` hold
every dataset column as a list aligned with the completions, ``completion_ids``, and the reward's
own parameters from the recipe. NaN means "unknown" (e.g. the verifier failed), never a silent 0.
"""
from rewards.combine import COMBINERS, fixed
from rewards.compute import RewardResult, RewardSpec, compute_rewards, resolve_rewards
from rewards.registry import REWARDS

__all__ = ["COMBINERS", "REWARDS", "RewardResult", "RewardSpec", "compute_rewards", "fixed", "resolve_rewards"]
