"""Metrics of a step's batch: what was generated and scored, and what the pipeline kept of it."""
from __future__ import annotations

import numpy as np

from rlpost.scoring import objective_means
from rlpost.types import Batch, Group


def completion_metrics(groups: dict[int, Group]) -> dict[str, float]:
    """Rewards, accuracy, lengths and counts over every completion the pipeline received."""
    scored = [s for g in groups.values() for s in g.members]
    known = [s.reward for s in scored if not np.isnan(s.reward)]
    lengths = [len(s.completion.token_ids) for s in scored]
    correct = [s.correct for s in scored if s.correct is not None]
    # over everything the sampler drew: adaptive samplers keep balanced groups, so reward/mean is not the policy's
    drawn = sum(g.stats.get("count", 0.0) for g in groups.values())
    return {
        **objective_means(scored),
        "reward/mean": float(np.mean(known)) if known else float("nan"),
        "train/accuracy": float(np.mean(correct)) if correct else float("nan"),
        "train/response_length": float(np.mean(lengths)) if lengths else 0.0,
        "train/truncated_frac": float(np.mean([s.completion.finish_reason == "length" for s in scored])) if scored else 0.0,
        "train/completions": float(len(scored)),
        "reward/pool_mean": sum(g.stats.get("reward_sum", 0.0) for g in groups.values()) / drawn if drawn else float("nan"),
    }


def selection_metrics(batch: Batch) -> dict[str, float]:
    """Share of groups (prompt level) and of rows (sample level) with a non-zero advantage in their group,
    and of rows and tokens the pipeline kept."""
    if len(batch) == 0:
        return {}
    out = {"train/kept_frac": float(batch.keep.float().mean())}
    if batch.advantages is not None:
        gids = batch.group_ids.tolist()
        nonzero = {int(g) for g, a in zip(gids, batch.advantages.tolist()) if abs(a) > 1e-8}
        out["train/groups_nonzero_adv_frac"] = len(nonzero) / max(1, len(set(gids)))
        out["train/samples_nonzero_adv_frac"] = sum(g in nonzero for g in gids) / len(gids)
    if batch.token_weights is not None:
        kept = batch.mask * batch.keep[:, None]
        out["train/token_keep_frac"] = float(((batch.token_weights != 0) * kept).sum() / kept.sum().clamp(min=1))
    return out
