"""Which device a process's models go to, and the checks that say so before any model loads.

Ray isolates GPUs per actor (``CUDA_VISIBLE_DEVICES``): an actor started with ``num_gpus=0`` sees no
CUDA device, one started with ``num_gpus=1`` sees its own. So "does this process see CUDA, and was it
meant to use a GPU" is the whole rule, the same in a Ray actor and in local mode.
"""
from __future__ import annotations

import torch

from rlpost.config import ConfigError


def actor_device(setting: str, gpus: float) -> torch.device:
    """``model.device`` for a process that was given ``gpus`` GPUs: ``auto`` is CUDA when it was given one
    and CUDA is visible, else CPU; ``cuda`` insists (one line when there is none); ``cpu`` is CPU."""
    if setting == "cpu":
        return torch.device("cpu")
    visible = torch.cuda.is_available()
    if setting == "cuda":
        if not visible:
            raise ConfigError("model.device=cuda but this process sees no CUDA device (give the actor a GPU with "
                              "cluster.learner_gpus / cluster.rollout_gpus, or set model.device=auto)")
        return torch.device("cuda")
    return torch.device("cuda") if gpus > 0 and visible else torch.device("cpu")


def release_cached_memory(device: torch.device) -> None:
    """Hand the CUDA caching allocator's free blocks back between phases (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_gpus(asked: dict[str, float], available: float, where: str) -> None:
    """One line when the recipe asks for more GPUs than ``where`` has (``asked``: recipe key -> GPUs)."""
    total = sum(asked.values())
    if total > available:
        keys = ", ".join(f"{k}={v:g}" for k, v in asked.items() if v)
        raise ConfigError(f"the recipe asks for {total:g} GPU(s) ({keys}) but {where} has {available:g}: ask for fewer, "
                          "or run where there are GPUs (cluster.address of a cluster with GPU nodes)")
