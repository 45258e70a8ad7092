"""Scored groups -> advantages -> selection -> TrainBatch (all via registered components)."""
from __future__ import annotations

import math

import numpy as np
import torch

from rlpost.algos import ADVANTAGES, SELECTORS
from rlpost.config import Config
from rlpost.rollout.samplers import Scored
from rlpost.scoring import objective_means
from rlpost.types import TrainBatch, TrainSample


def build_batch(cfg: Config, groups: dict[int, list[Scored]]) -> tuple[TrainBatch, dict[str, float]]:
    a = cfg.algo
    all_scored = [s for g in groups.values() for s in g]
    # A NaN reward means a verifier or reward failed: the sample is dropped (and was counted).
    valid = [(key, s) for key, g in groups.items() for s in g if not math.isnan(s.reward)]
    metrics: dict[str, float] = objective_means(all_scored)
    lengths = [len(s.completion.token_ids) for s in all_scored]
    correct = [s.correct for s in all_scored if s.correct is not None]
    metrics.update({
        "reward/mean": float(np.mean([s.reward for _, s in valid])) if valid else float("nan"),
        "train/accuracy": float(np.mean(correct)) if correct else float("nan"),
        "train/response_length": float(np.mean(lengths)) if lengths else 0.0,
        "train/truncated_frac": float(np.mean([s.completion.finish_reason == "length" for s in all_scored])) if all_scored else 0.0,
        "train/completions": float(len(all_scored)),
    })
    if not valid:
        return TrainBatch([], cfg.rollout.temperature or 1.0, cfg.rollout.max_new_tokens), metrics
    rewards = torch.tensor([s.reward for _, s in valid], dtype=torch.float32)
    gids = torch.tensor([key for key, _ in valid], dtype=torch.long)
    adv = ADVANTAGES.get(a.advantage)(rewards, gids, eps=a.adv_eps)
    keep = SELECTORS.get(a.selector)(rewards, gids)
    nonzero_groups = {int(g) for g, x in zip(gids.tolist(), adv.tolist()) if abs(x) > 1e-8}
    metrics["train/groups_nonzero_adv_frac"] = len(nonzero_groups) / max(1, len(set(gids.tolist())))
    metrics["train/kept_frac"] = float(keep.float().mean())
    samples = [
        TrainSample(
            prompt_ids=s.completion.prompt_ids, token_ids=s.completion.token_ids,
            rollout_logprobs=s.completion.logprobs, advantage=float(adv[i]),
            policy_version=s.completion.policy_version,
        )
        for i, (_, s) in enumerate(valid)
        if keep[i]
    ]
    return TrainBatch(samples, cfg.rollout.temperature or 1.0, cfg.rollout.max_new_tokens), metrics
