"""The reward registry."""
from __future__ import annotations

from typing import Callable

from rlpost.registry import Registry

RewardFn = Callable[..., list[float]]

REWARDS: Registry[RewardFn] = Registry("reward", builtins_module="rewards.builtin")
